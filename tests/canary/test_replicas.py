"""Two real servers on one database: a canary assigns the same agents on both, and a rollback
on one shows in the next decision on the other."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.policy.canary import on_canary
from tests.canary.helpers import BUNDLE, deny_all
from tests.fixtures.servers import server_env, serving

TOKEN = "acp_op_canary-test-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _agents(url: str, count: int) -> list[tuple[str, dict[str, str]]]:
    httpx.post(f"{url}/v1/domains", json={"name": "payments"}, headers=ADMIN)
    out = []
    for i in range(count):
        agent = httpx.post(
            f"{url}/v1/agents",
            json={"name": f"bot-{i}", "domain": "payments", "owner": "o"},
            headers=ADMIN,
        ).json()
        cred = httpx.post(
            f"{url}/v1/agents/{agent['id']}/credentials",
            json={"scopes": ["decisions:create"]},
            headers=ADMIN,
        ).json()
        pair = base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}".encode()).decode()
        r = httpx.post(
            f"{url}/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {pair}"},
        )
        assert r.status_code == 200, r.text
        out.append((agent["id"], {"Authorization": f"Bearer {r.json()['access_token']}"}))
    return out


def _served(url: str, headers: dict[str, str]) -> tuple[Any, Any]:
    body = {"action": "payments.refund", "resource": {"type": "order", "id": "o-1"}}
    r = httpx.post(f"{url}/v1/decisions", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["served_by"], r.json()["revision"]


@pytest.mark.usefixtures("opa_bin")
def test_two_replicas_assign_alike_and_roll_back_on_the_next_decision(
    db_url: str, tmp_path: Path
) -> None:
    env = server_env(
        db_url,
        tmp_path,
        AGENTCTL_ADMIN_TOKEN=TOKEN,
        AGENTCTL_KEY_ENCRYPTION_KEY="canary-test-key-encryption-key-0123456789abcdef",
        AGENTCTL_ISSUER="http://control-plane.test",
    )
    with serving(env, tmp_path / "a.log") as a, serving(env, tmp_path / "b.log") as b:
        agents = _agents(a, 8)
        r = httpx.post(f"{a}{BUNDLE}/revisions", json=deny_all(), headers=ADMIN, timeout=60)
        assert r.status_code == 201, r.text
        canary = r.json()["revision"]
        r = httpx.put(
            f"{a}{BUNDLE}/canary", json={"revision": canary, "percent": 50}, headers=ADMIN
        )
        assert r.status_code == 200, r.text
        for agent_id, headers in agents:
            on = on_canary("default", agent_id, "payments", 5_000, ())
            want = ("canary", canary) if on else ("active", 1)
            assert _served(a, headers) == want
            assert _served(b, headers) == want

        r = httpx.post(f"{b}{BUNDLE}/canary/rollback", headers=ADMIN)
        assert r.status_code == 200, r.text
        for _, headers in agents:  # the next decision, on the other replica
            assert _served(a, headers) == ("active", 1)

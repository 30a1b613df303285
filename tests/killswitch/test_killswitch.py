"""The kill switch: a domain's agents are refused in one step, and on every replica within 1 s."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.decisions import REFUND, decider
from tests.fixtures.events import events_until
from tests.fixtures.factories import create_domain, create_operator
from tests.fixtures.oauth2 import basic
from tests.fixtures.servers import server_env, serving


async def _status_within(client: httpx.AsyncClient, headers: dict[str, str], want: int) -> int:
    """The decision endpoint's status once it is ``want`` (the auth state is cached <= 1 s)."""
    deadline = time.monotonic() + 2
    while True:
        r = await client.post("/v1/decisions", json=REFUND, headers=headers)
        if r.status_code == want or time.monotonic() > deadline:
            return r.status_code
        await asyncio.sleep(0.05)


async def _token(client: httpx.AsyncClient, cred: dict[str, Any]) -> httpx.Response:
    return await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(cred["client_id"], cred["client_secret"]),
    )


async def test_domain_suspend_and_resume(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    me = await decider(client, admin)
    agent_id = me["agent"]["id"]
    cred = (
        await client.post(
            f"/v1/agents/{agent_id}/credentials",
            json={"scopes": ["decisions:create"]},
            headers=admin,
        )
    ).json()
    assert (await client.post("/v1/decisions", json=REFUND, headers=me["headers"])).json()["allow"]

    r = await client.post("/v1/domains/payments/suspend", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["suspended_at"] is not None
    assert (await client.post("/v1/domains/payments/suspend", headers=admin)).status_code == 409
    assert await _status_within(client, me["headers"], 401) == 401
    refused = await _token(client, cred)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    # The right secret: the answer says why, not that authentication failed.
    assert refused.json()["error_description"] == "The agent's domain is suspended."

    r = await client.post("/v1/domains/payments/resume", headers=admin)
    assert r.status_code == 200
    assert r.json()["suspended_at"] is None
    assert await _status_within(client, me["headers"], 200) == 200
    assert (await _token(client, cred)).status_code == 200

    # An agent suspended on its own stays suspended when its domain resumes.
    await client.post(f"/v1/agents/{agent_id}/suspend", headers=admin)
    await client.post("/v1/domains/payments/suspend", headers=admin)
    await client.post("/v1/domains/payments/resume", headers=admin)
    assert await _status_within(client, me["headers"], 401) == 401
    assert (await _token(client, cred)).status_code == 401

    records = (
        await client.get("/v1/audit/records", params={"domain": "payments"}, headers=admin)
    ).json()["data"]
    kill = [r["action"] for r in records if r["kind"] == "kill_switch"]
    assert kill == [
        "domain.suspend",
        "domain.resume",
        "agent.suspend",
        "domain.suspend",
        "domain.resume",
    ]
    events = await events_until(
        client, admin, lambda es: sum(e["type"] == "domain.resumed.v1" for e in es) == 2
    )
    types = [e["type"] for e in events]
    assert types.count("domain.suspended.v1") == 2
    assert types.count("domain.resumed.v1") == 2
    # Each domain suspension announces the agents it stopped: one agent, active the first time.
    assert types.count("agent.suspended.v1") == 2


async def test_who_may_pull_the_switch(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await create_domain(client, admin, "payments")
    await create_domain(client, admin, "claims")
    claims_admin = await create_operator(client, admin, "domain_admin", ["claims"])
    auditor = await create_operator(client, admin, "auditor")
    payments_admin = await create_operator(client, admin, "domain_admin", ["payments"])
    assert (await client.post("/v1/domains/payments/suspend", headers=auditor)).status_code == 403
    r = await client.post("/v1/domains/payments/suspend", headers=claims_admin)
    assert r.status_code == 404
    assert (await client.post("/v1/domains/nowhere/suspend", headers=admin)).status_code == 404
    assert (await client.post("/v1/domains/Bad_Name/suspend", headers=admin)).status_code == 422
    r = await client.post("/v1/domains/payments/suspend", headers=payments_admin)
    assert r.status_code == 200
    assert (await client.post("/v1/domains/claims/resume", headers=admin)).status_code == 409


@pytest.mark.only_db("postgresql")  # replicas share a PostgreSQL database
def test_two_replicas_refuse_within_a_second(db_url: str, tmp_path: Path) -> None:
    token = "acp_op_killswitch-test-admin-token-0123456789abcdef"
    env = server_env(
        db_url,
        tmp_path,
        AGENTCTL_ADMIN_TOKEN=token,
        AGENTCTL_KEY_ENCRYPTION_KEY="killswitch-test-key-encryption-key-0123456789",
        AGENTCTL_ISSUER="http://control-plane.test",
    )
    admin = {"Authorization": f"Bearer {token}"}
    with serving(env, tmp_path / "a.log") as a, serving(env, tmp_path / "b.log") as b:
        httpx.post(f"{a}/v1/domains", json={"name": "payments"}, headers=admin)
        tokens = []
        for i in range(3):
            agent = httpx.post(
                f"{a}/v1/agents",
                json={"name": f"bot-{i}", "domain": "payments", "owner": "o"},
                headers=admin,
            ).json()
            cred = httpx.post(
                f"{a}/v1/agents/{agent['id']}/credentials",
                json={"scopes": ["decisions:create"]},
                headers=admin,
            ).json()
            pair = f"{cred['client_id']}:{cred['client_secret']}".encode()
            r = httpx.post(
                f"{b}/oauth/token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {base64.b64encode(pair).decode()}"},
            )
            assert r.status_code == 200, r.text
            tokens.append({"Authorization": f"Bearer {r.json()['access_token']}"})

        def refused_everywhere() -> bool:
            return all(
                httpx.get(f"{url}/v1/agents/me", headers=h).status_code == 401
                for url in (a, b)
                for h in tokens
            )

        assert not refused_everywhere()
        assert all(httpx.get(f"{b}/v1/agents/me", headers=h).status_code == 200 for h in tokens)
        r = httpx.post(f"{a}/v1/domains/payments/suspend", headers=admin)
        assert r.status_code == 200, r.text
        start = time.monotonic()
        while not refused_everywhere():
            assert time.monotonic() - start < 5, "the kill switch was never enforced"
            time.sleep(0.01)
        lag = time.monotonic() - start
        print(f"\nkill switch: every agent refused on both replicas after {lag * 1000:.0f} ms")
        assert lag < 1.0

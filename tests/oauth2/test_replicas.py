"""Two server processes on one database: a change made through one is enforced by the other
within 1 s, even with the per-replica state cache at its 0.5 s setting."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.fixtures.servers import server_env, serving

ADMIN = "acp_op_replica-test-admin-token-0123456789abcdef"
KEK = "replica-test-key-encryption-key-0123456789abcdef"


def _lag(check: Callable[[], int], change: Callable[[], None]) -> float:
    """Seconds from ``change()`` returning until ``check()`` stops answering 200."""
    assert check() == 200
    change()
    start = time.monotonic()
    while check() == 200:
        elapsed = time.monotonic() - start
        assert elapsed < 5, "change never enforced"
        time.sleep(0.01)
    return time.monotonic() - start


def test_revocation_and_suspension_reach_the_other_replica(db_url: str, tmp_path: Path) -> None:
    env = server_env(
        db_url,
        tmp_path,
        AGENTCTL_ADMIN_TOKEN=ADMIN,
        AGENTCTL_KEY_ENCRYPTION_KEY=KEK,
        AGENTCTL_ISSUER="http://control-plane.test",
        AGENTCTL_AUTH_STATE_TTL_SECONDS="0.5",
    )
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with serving(env, tmp_path / "a.log") as a, serving(env, tmp_path / "b.log") as b:
        httpx.post(f"{a}/v1/domains", json={"name": "payments"}, headers=admin)
        agent = httpx.post(
            f"{a}/v1/agents",
            json={"name": "bot", "domain": "payments", "owner": "o"},
            headers=admin,
        ).json()
        cred = httpx.post(
            f"{a}/v1/agents/{agent['id']}/credentials",
            json={"scopes": ["decisions:create"]},
            headers=admin,
        ).json()
        basic = base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}".encode()).decode()

        def new_token() -> dict[str, str]:
            r = httpx.post(
                f"{a}/oauth/token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {basic}"},
            )
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        lags: dict[str, float] = {}
        me = new_token()
        lags["suspend agent"] = _lag(
            lambda: httpx.get(f"{b}/v1/agents/me", headers=me).status_code,
            lambda: httpx.post(f"{a}/v1/agents/{agent['id']}/suspend", headers=admin),
        )
        httpx.post(f"{a}/v1/agents/{agent['id']}/resume", headers=admin)
        time.sleep(0.6)

        me = new_token()
        token_value = me["Authorization"].split()[1]
        lags["revoke token"] = _lag(
            lambda: httpx.get(f"{b}/v1/agents/me", headers=me).status_code,
            lambda: httpx.post(
                f"{a}/oauth/revoke",
                data={"token": token_value},
                headers={"Authorization": f"Basic {basic}"},
            ),
        )

        me = new_token()
        lags["revoke credential"] = _lag(
            lambda: httpx.get(f"{b}/v1/agents/me", headers=me).status_code,
            lambda: httpx.post(
                f"{a}/v1/agents/{agent['id']}/credentials/{cred['client_id']}/revoke",
                headers=admin,
            ),
        )
    print()
    for what, lag in lags.items():
        print(f"replica lag ({db_url.split(':')[0]}): {what}: {lag * 1000:.0f} ms")
    assert all(lag < 1.0 for lag in lags.values()), lags

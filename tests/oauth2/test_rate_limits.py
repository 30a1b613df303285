"""Failed authentications are limited per client id and per source address (``kit.ratelimit``):
at /oauth/token and /oauth/revoke, and for operator tokens. Over HTTP, on SQLite and PostgreSQL;
the limits hold across two ``agentctl serve`` replicas sharing PostgreSQL.

The windows are a day long here, so no test runs across a window boundary in practice."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from control_plane.config import Settings
from control_plane.oauth2.pruning import prune_expired
from control_plane.state import app_state
from tests.fixtures.factories import bearer
from tests.fixtures.oauth2 import basic, new_agent, secret_credential
from tests.fixtures.servers import server_env, serving

DAY = 86_400
GRANT = {"grant_type": "client_credentials"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "auth_failure_window_seconds": DAY,
            "oauth_client_failure_limit": 10,
            "oauth_source_failure_limit": 100,
            "operator_source_failure_limit": 5,
        }
    )


@pytest.fixture
async def elsewhere(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose requests come from another source address."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("10.9.8.7", 4))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def two_clients(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    agent = await new_agent(client, admin)
    return (
        await secret_credential(client, admin, agent["id"]),
        await secret_credential(client, admin, agent["id"]),
    )


def assert_slow_down(r: httpx.Response, window: int = DAY) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"] == "slow_down"
    assert body["code"] == "rate_limited"
    assert body["status"] == 429
    assert 1 <= int(r.headers["retry-after"]) <= window


async def test_a_client_id_is_refused_after_its_limit_and_others_still_work(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    a, b = await two_clients(client, admin)
    wrong = basic(a["client_id"], "acp_cs_" + "x" * 43)
    for _ in range(10):
        r = await client.post("/oauth/token", data=GRANT, headers=wrong)
        assert r.status_code == 401, r.text
        assert r.json()["error_description"] == "Client authentication failed."
    assert_slow_down(await client.post("/oauth/token", data=GRANT, headers=wrong))
    # While the client id is locked, even its right secret is refused: guessing stops there.
    right_a = basic(a["client_id"], a["client_secret"])
    assert_slow_down(await client.post("/oauth/token", data=GRANT, headers=right_a))
    # The revocation endpoint authenticates the same client: the same limit.
    r = await client.post("/oauth/revoke", data={"token": "x"}, headers=right_a)
    assert_slow_down(r)
    # Another client's right secret, from the same address, works at once.
    r = await client.post(
        "/oauth/token", data=GRANT, headers=basic(b["client_id"], b["client_secret"])
    )
    assert r.status_code == 200, r.text


async def test_two_thousand_failed_secrets_from_one_address_are_mostly_429(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    a, b = await two_clients(client, admin)
    seen: Counter[int] = Counter()
    for i in range(2000):
        headers = basic(a["client_id"], f"acp_cs_guess-{i:05d}-" + "y" * 32)
        seen[(await client.post("/oauth/token", data=GRANT, headers=headers)).status_code] += 1
    assert seen == {401: 10, 429: 1990}, seen
    r = await client.post(
        "/oauth/token", data=GRANT, headers=basic(b["client_id"], b["client_secret"])
    )
    assert r.status_code == 200, r.text


async def test_spraying_many_client_ids_locks_the_source(
    client: httpx.AsyncClient, elsewhere: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    _, b = await two_clients(client, admin)
    seen: Counter[int] = Counter()
    for _ in range(130):
        headers = basic(str(uuid.uuid4()), "acp_cs_" + "z" * 43)
        seen[(await client.post("/oauth/token", data=GRANT, headers=headers)).status_code] += 1
    assert seen == {401: 100, 429: 30}, seen
    # Malformed attempts count too, and are refused like the rest.
    r = await client.post("/oauth/token", data=GRANT, headers={"Authorization": "Basic !!"})
    assert_slow_down(r)
    right_b = basic(b["client_id"], b["client_secret"])
    # The locked address is refused whatever it sends; another address is not affected.
    assert_slow_down(await client.post("/oauth/token", data=GRANT, headers=right_b))
    assert (await elsewhere.post("/oauth/token", data=GRANT, headers=right_b)).status_code == 200


async def test_a_success_neither_counts_nor_resets(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    a, _ = await two_clients(client, admin)
    right = basic(a["client_id"], a["client_secret"])
    wrong = basic(a["client_id"], "acp_cs_" + "w" * 43)
    for _ in range(9):
        assert (await client.post("/oauth/token", data=GRANT, headers=wrong)).status_code == 401
    for _ in range(30):
        assert (await client.post("/oauth/token", data=GRANT, headers=right)).status_code == 200
    assert (await client.post("/oauth/token", data=GRANT, headers=wrong)).status_code == 401
    assert_slow_down(await client.post("/oauth/token", data=GRANT, headers=right))


async def test_operator_tokens_are_limited_per_source(
    client: httpx.AsyncClient, elsewhere: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for _ in range(20):  # valid tokens are not counted
        assert (await client.get("/v1/agents", headers=admin)).status_code == 200
    for i in range(5):
        r = await client.get("/v1/agents", headers=bearer(f"acp_op_guess-{i}-" + "q" * 40))
        assert r.status_code == 401, r.text
    r = await client.get("/v1/agents", headers=bearer("acp_op_guess-6-" + "q" * 40))
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= DAY
    # The address is refused for any token on any operator route, writes included ...
    assert (await client.get("/v1/agents", headers=admin)).status_code == 429
    r = await client.post("/v1/domains", json={"name": "x"}, headers=admin)
    assert r.status_code == 429
    # ... a request without a token is answered 401 as before (nothing to guess) ...
    assert (await client.get("/v1/agents")).status_code == 401
    # ... and other addresses are not affected.
    assert (await elsewhere.get("/v1/agents", headers=admin)).status_code == 200
    assert (
        await elsewhere.post("/v1/domains", json={"name": "y"}, headers=admin)
    ).status_code == 201


async def test_old_windows_are_pruned(app: FastAPI, client: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (
            await client.get("/v1/agents", headers=bearer("acp_op_" + "n" * 40))
        ).status_code == 401
    database = app_state(app).database
    # The window is a day: nothing is old yet.
    assert (await prune_expired(database, failure_window=DAY)).auth_failures == 0
    # Counted in 1-second windows, the row is from an earlier window a second later.
    await asyncio.sleep(1.1)
    assert (await prune_expired(database, failure_window=1)).auth_failures == 1


@pytest.mark.only_db("postgresql")  # replicas share PostgreSQL; SQLite is one process
def test_limits_hold_across_two_replicas(db_url: str, tmp_path: Path) -> None:
    admin_token = "acp_op_ratelimit-replicas-admin-0123456789abcdef"
    env = server_env(
        db_url,
        tmp_path,
        AGENTCTL_ADMIN_TOKEN=admin_token,
        AGENTCTL_KEY_ENCRYPTION_KEY="ratelimit-replicas-kek-0123456789abcdef0123",
        AGENTCTL_AUTH_FAILURE_WINDOW_SECONDS=str(DAY),
        AGENTCTL_OAUTH_CLIENT_FAILURE_LIMIT="10",
        AGENTCTL_OPERATOR_SOURCE_FAILURE_LIMIT="8",
    )
    admin = bearer(admin_token)
    with serving(env, tmp_path / "a.log") as a, serving(env, tmp_path / "b.log") as b:
        assert httpx.post(f"{a}/v1/domains", json={"name": "payments"}, headers=admin).is_success
        agent = httpx.post(
            f"{a}/v1/agents",
            json={"name": "bot", "domain": "payments", "owner": "o"},
            headers=admin,
        ).json()
        creds = [
            httpx.post(
                f"{a}/v1/agents/{agent['id']}/credentials",
                json={"scopes": ["decisions:create"]},
                headers=admin,
            ).json()
            for _ in range(2)
        ]

        def auth(cred: dict[str, Any], secret: str | None = None) -> dict[str, str]:
            raw = f"{cred['client_id']}:{secret or cred['client_secret']}"
            return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}

        seen: Counter[int] = Counter()
        for i in range(200):
            replica = (a, b)[i % 2]
            r = httpx.post(f"{replica}/oauth/token", data=GRANT, headers=auth(creds[0], f"bad{i}"))
            seen[r.status_code] += 1
        # Ten guesses in all, not ten per replica.
        assert seen == {401: 10, 429: 190}, seen
        for replica in (a, b):
            r = httpx.post(f"{replica}/oauth/token", data=GRANT, headers=auth(creds[0]))
            assert r.status_code == 429
            r = httpx.post(f"{replica}/oauth/token", data=GRANT, headers=auth(creds[1]))
            assert r.status_code == 200, r.text

        ops: Counter[int] = Counter()
        for i in range(40):
            replica = (a, b)[i % 2]
            r = httpx.get(f"{replica}/v1/agents", headers=bearer(f"acp_op_guess{i}" + "k" * 40))
            ops[r.status_code] += 1
        assert ops == {401: 8, 429: 32}, ops

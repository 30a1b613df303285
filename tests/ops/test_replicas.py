"""Several workers and several replicas on one PostgreSQL: decisions, idempotency, revocation
lag and audit sequencing hold across `agentctl serve --workers 2` processes and two replicas."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.audit.support import writer
from tests.conftest import ADMIN_TOKEN
from tests.fixtures.decisions import REFUND
from tests.fixtures.oauth2 import basic
from tests.fixtures.servers import free_port, server_env
from tests.ops.servers import query, start, stop
from tests.ops.support import samples, total

pytestmark = pytest.mark.postgres

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KEK = "k" * 48


async def fresh(url: str, method: str, path: str, **kw: Any) -> httpx.Response:
    """One request on a connection of its own, so successive requests meet different workers."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        return await c.request(method, path, **kw)


async def test_two_replicas_of_two_workers_share_one_database(pg_url: str, tmp_path: Path) -> None:
    common = {
        "AGENTCTL_ADMIN_TOKEN": ADMIN_TOKEN,
        "AGENTCTL_KEY_ENCRYPTION_KEY": KEK,
        "AGENTCTL_ISSUER": "http://control-plane.test",
        # The longest a replica may reuse revocation state: the lag bound under test.
        "AGENTCTL_AUTH_STATE_TTL_SECONDS": "1.0",
        "AGENTCTL_AUDIT_CHECKPOINT_SECONDS": "1",
    }
    metrics_port = free_port()
    a = start(
        server_env(pg_url, tmp_path / "a", AGENTCTL_METRICS_PORT=str(metrics_port), **common),
        tmp_path / "a.log",
        "--workers",
        "2",
    )
    try:
        b = start(
            server_env(pg_url, tmp_path / "b", **common), tmp_path / "b.log", "--workers", "2"
        )
        try:
            await _exercise(a.url, b.url, pg_url, metrics_port)
        finally:
            stop(b)
        assert not b.errors(), b.errors()
        assert (tmp_path / "b.log").read_text().count("Started server process") >= 2
    finally:
        stop(a)
    assert not a.errors(), a.errors()
    assert (tmp_path / "a.log").read_text().count("Started server process") >= 2


async def _exercise(a: str, b: str, pg_url: str, metrics_port: int) -> None:
    async with httpx.AsyncClient(base_url=a, timeout=60) as client:
        me = await writer(client, ADMIN)
        agent_id = me["agent"]["id"]
        cred = (
            await client.post(
                f"/v1/agents/{agent_id}/credentials",
                json={"scopes": ["decisions:create"]},
                headers=ADMIN,
            )
        ).json()
    replicas = (a, b)

    # Decisions, each on a new connection, alternating replicas (and so workers).
    ids = []
    for i in range(24):
        r = await fresh(
            replicas[i % 2], "POST", "/v1/decisions", json=REFUND, headers=me["headers"]
        )
        assert r.status_code == 200, r.text
        ids.append(r.json()["decision_id"])
    assert len(set(ids)) == 24

    # Idempotency: a key used at one replica replays at the other; another body conflicts.
    key = {"Idempotency-Key": f"ops-{uuid.uuid4()}"}
    first = await fresh(a, "POST", "/v1/decisions", json=REFUND, headers={**me["headers"], **key})
    again = await asyncio.gather(
        *(
            fresh(url, "POST", "/v1/decisions", json=REFUND, headers={**me["headers"], **key})
            for url in (a, b, b, a)
        )
    )
    assert first.status_code == 200, first.text
    assert {r.json()["decision_id"] for r in again} == {first.json()["decision_id"]}
    assert all(r.headers.get("idempotent-replayed") == "true" for r in again)
    other = {**REFUND, "action": "payments.payout"}
    conflict = await fresh(b, "POST", "/v1/decisions", json=other, headers={**me["headers"], **key})
    assert conflict.status_code in (409, 422), conflict.text

    # Revocation: a token revoked at replica A is refused everywhere within 1 s.
    token = await fresh(
        b,
        "POST",
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(cred["client_id"], cred["client_secret"]),
    )
    assert token.status_code == 200, token.text
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    for url in replicas:  # warm every replica's state cache with the token still valid
        assert (await fresh(url, "POST", "/v1/decisions", json=REFUND, headers=bearer)).is_success
    revoked = await fresh(
        a,
        "POST",
        "/oauth/revoke",
        data={"token": token.json()["access_token"]},
        headers=basic(cred["client_id"], cred["client_secret"]),
    )
    assert revoked.status_code == 200, revoked.text
    revoked_at = time.monotonic()
    late: list[tuple[float, int]] = []
    while time.monotonic() - revoked_at < 2.0:
        for url in replicas:
            sent = time.monotonic() - revoked_at
            r = await fresh(url, "POST", "/v1/decisions", json=REFUND, headers=bearer)
            if r.status_code != 401:
                late.append((sent, r.status_code))
    assert all(sent <= 1.0 for sent, _ in late), late

    # Audit: every decision's record sequenced once, contiguously, and the logs verify.
    decided = len(ids) + 1 + 2 + len(late)
    deadline = time.monotonic() + 60
    while True:
        check = await fresh(b, "GET", "/v1/audit/verify", headers=ADMIN)
        assert check.status_code == 200, check.text
        logs = check.json()["logs"]
        if logs and logs[0]["size"] == decided and logs[0]["checkpoint_size"] == decided:
            break
        assert time.monotonic() < deadline, logs
        await asyncio.sleep(0.5)
    assert check.json()["ok"] is True, check.json()
    ((count, low, high),) = await query(
        pg_url, "SELECT count(*), min(seq), max(seq) FROM audit_leaves WHERE domain = 'payments'"
    )
    assert (count, low, high) == (decided, 0, decided - 1)
    assert await query(pg_url, "SELECT count(*) FROM audit_pending") == [(0,)]

    # Metrics of replica A's two workers are merged (its unauthenticated metrics port).
    async with httpx.AsyncClient(timeout=30) as c:
        scraped = samples((await c.get(f"http://127.0.0.1:{metrics_port}/metrics")).text)
        assert (await c.get(f"http://127.0.0.1:{metrics_port}/v1/agents")).status_code == 404
    answered_by_a = total(
        scraped, "agentctl_http_requests_total", route="/v1/decisions", status="200"
    )
    assert answered_by_a >= 12 + 1  # its half of the 24, the first keyed call, the warm-up
    assert total(scraped, "agentctl_tokens_issued_total") >= 1

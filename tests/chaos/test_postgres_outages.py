"""A real server on a private PostgreSQL cluster that the tests restart, crash and stop.

What a client sees: successes, or 503 problem+json ``database_unavailable`` with ``Retry-After``;
never a 500. Once PostgreSQL is back every request succeeds within 5 s, without restarting the
service, and every acknowledged write is stored exactly once (retries reuse their
``Idempotency-Key``, so a request whose commit landed but whose answer was a 503 replays).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from tests.chaos.support import (
    ADMIN_TOKEN,
    DECISION,
    KEK,
    Load,
    agent_headers,
    assert_only_ok_or_503,
)
from tests.fixtures.pgcluster import PrivateCluster, StopMode
from tests.fixtures.servers import Server, server_env, start_server

pytestmark = pytest.mark.postgres

RECOVERY_BOUND = 5.0  # seconds from PostgreSQL being back to every request succeeding


@dataclass
class Stack:
    pg: PrivateCluster
    server: Server
    agent: dict[str, str]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("chaos-pg")
    with PrivateCluster(base) as pg:
        env = server_env(
            pg.url,
            base,
            AGENTCTL_ADMIN_TOKEN=ADMIN_TOKEN,
            AGENTCTL_KEY_ENCRYPTION_KEY=KEK,
        )
        server = start_server(env, base / "serve.log")
        try:
            yield Stack(pg, server, agent_headers(server.url))
        finally:
            server.proc.terminate()
            server.proc.wait(timeout=30)
        assert not server.errors(), server.errors()


async def _ids(url: str, table: str) -> list[str]:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return [str(r[0]) for r in await conn.fetch(f"SELECT id FROM {table}")]  # noqa: S608
    finally:
        await conn.close()


async def _through(stack: Stack, modes: list[StopMode]) -> tuple[Load, list[float]]:
    """Drive load while PostgreSQL restarts once per mode; when each restart returned."""
    load = Load(stack.server.url, stack.agent)
    stop = asyncio.Event()
    running = asyncio.create_task(load.run(stop))
    back: list[float] = []
    await asyncio.sleep(1.5)
    for mode in modes:
        await asyncio.to_thread(stack.pg.restart, mode)
        back.append(time.monotonic())
        await asyncio.sleep(RECOVERY_BOUND + 2)
    stop.set()
    await asyncio.wait_for(running, timeout=60)
    return load, back


def test_restarts_answer_503_then_recover_and_lose_nothing(stack: Stack) -> None:
    before_agents = set(asyncio.run(_ids(stack.pg.url, "agents")))
    load, back = asyncio.run(_through(stack, ["fast", "immediate"]))

    assert_only_ok_or_503(load.answers)
    # The restarts were seen: some answers during them were 503s.
    assert any(a.status == 503 for a in load.answers), "no request met the restarts"
    for returned in back:
        # From RECOVERY_BOUND after PostgreSQL is back until the next restart, all succeed.
        late = [
            a
            for a in load.answers
            if returned + RECOVERY_BOUND < a.at < returned + RECOVERY_BOUND + 2
        ]
        assert late, "no load after the restart"
        assert all(a.status in (200, 201) for a in late), [a for a in late if a.status >= 300]

    stored_decisions = asyncio.run(_ids(stack.pg.url, "decisions"))
    assert sorted(stored_decisions) == sorted(load.decisions)  # each exactly once
    stored_agents = [a for a in asyncio.run(_ids(stack.pg.url, "agents")) if a not in before_agents]
    assert sorted(stored_agents) == sorted(load.agents)
    assert len(load.decisions) > 50
    assert len(load.agents) > 5
    assert not stack.server.errors()


def test_postgres_stopped_for_30_seconds(stack: Stack) -> None:
    url = stack.server.url
    before = len(stack.server.log.read_text())  # the module's other test shares the server
    stack.pg.stop("fast")
    try:
        stopped = time.monotonic()
        with httpx.Client(base_url=url, timeout=30) as c:
            while time.monotonic() - stopped < 30:
                assert c.get("/healthz").status_code == 200
                ready = c.get("/readyz")
                assert ready.status_code == 503
                assert ready.headers["content-type"] == "application/problem+json"
                assert ready.json()["code"] == "database_unavailable"
                assert "database" in ready.json()["detail"]
                asked = time.monotonic()
                r = c.post("/v1/decisions", json=DECISION, headers=stack.agent)
                assert time.monotonic() - asked < 10  # refused at once, not hanging (refused)
                assert r.status_code == 503, r.text
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["code"] == "database_unavailable"
                assert int(r.headers["retry-after"]) >= 1
                time.sleep(1)
    finally:
        stack.pg.start()
    back = time.monotonic()
    with httpx.Client(base_url=url, timeout=30) as c:
        while True:
            ready = c.get("/readyz").status_code
            decided = c.post("/v1/decisions", json=DECISION, headers=stack.agent).status_code
            if ready == decided == 200:
                break
            assert {ready, decided} <= {200, 503}
            assert time.monotonic() - back < RECOVERY_BOUND, "not recovered"
            time.sleep(0.1)
    assert not stack.server.errors()
    # The background loops retried all along (the sequencer every 0.1 s, the webhook
    # dispatcher every 0.25 s) but logged each streak's first failure and then one line every
    # 30 s, not one line a round; and said when they recovered.
    deadline = time.monotonic() + 10
    while "webhook_round_recovered" not in (log := stack.server.log.read_text()[before:]):
        assert time.monotonic() < deadline, log[-3000:]
        time.sleep(0.2)
    for loop in ("audit_worker_round", "webhook_round"):
        assert 1 <= log.count(f"{loop}_failed") <= 3, log[-3000:]
        assert log.count(f"{loop}_recovered") == 1, log[-3000:]

"""SIGKILL of a real server under concurrent decisions loses no acknowledged decision.

An answer is sent only after its transaction committed, so every decision a client got a 200
for is on record after the crash, on SQLite (WAL) and on PostgreSQL alike. At most the requests
in flight at the kill may be stored without their answer having arrived.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.chaos.support import ADMIN, ADMIN_TOKEN, DECISION, KEK, agent_headers
from tests.fixtures.servers import server_env, serving, start_server

WORKERS = 4


async def _decide_until_killed(url: str, agent: dict[str, str], acked: list[str]) -> None:
    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                r = await client.post("/v1/decisions", json=DECISION, headers=agent)
            except httpx.TransportError:
                return  # the server is gone
            assert r.status_code == 200, r.text
            acked.append(r.json()["decision_id"])

    limits = httpx.Limits(max_connections=WORKERS)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(WORKERS)))


def _stored(url: str) -> list[str]:
    ids: list[str] = []
    params: dict[str, str | int] = {"limit": 200}
    with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as c:
        while True:
            page = c.get("/v1/decisions", params=params).json()
            ids += [d["id"] for d in page["data"]]
            if not page["has_more"]:
                return ids
            params["after"] = page["next_after"]


def test_sigkill_under_load_loses_no_acknowledged_decision(db_url: str, tmp_path: Path) -> None:
    env = server_env(
        db_url, tmp_path, AGENTCTL_ADMIN_TOKEN=ADMIN_TOKEN, AGENTCTL_KEY_ENCRYPTION_KEY=KEK
    )
    server = start_server(env, tmp_path / "killed.log")
    acked: list[str] = []
    try:
        agent = agent_headers(server.url)

        async def load_then_kill() -> None:
            running = asyncio.create_task(_decide_until_killed(server.url, agent, acked))
            while len(acked) < 100 and not running.done():
                await asyncio.sleep(0.05)
            await asyncio.to_thread(server.kill)
            await asyncio.wait_for(running, timeout=60)

        asyncio.run(load_then_kill())
    finally:
        if server.proc.poll() is None:
            server.kill()
    assert server.proc.returncode == -9
    assert len(acked) >= 100

    with serving(env, tmp_path / "after.log") as url:
        stored = _stored(url)
    assert len(stored) == len(set(stored))
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged decisions lost"
    # Stored but never acknowledged: only what was in flight when the server died.
    assert len(stored) - len(acked) <= WORKERS

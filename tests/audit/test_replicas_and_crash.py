"""On PostgreSQL: two server processes with eight concurrent writers each send 1,000 records
apiece; every acknowledged record is in the log exactly once, the log is contiguous from 0 and
verifies. Then the same ingest with PostgreSQL crashed (pg_ctl stop -m immediate) and restarted
in the middle, on a private cluster."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.audit.support import record
from tests.conftest import ADMIN_TOKEN, PG_URL, _pg_admin, _pg_drop
from tests.fixtures.decisions import decider
from tests.fixtures.pgcluster import PrivateCluster
from tests.fixtures.servers import server_env, serving

pytestmark = pytest.mark.postgres

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SERVERS = 2
WRITERS_PER_SERVER = 8
RECORDS_PER_WRITER = 1_000
BATCH = 100


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    assert PG_URL is not None
    name = f"acp_t_{uuid.uuid4().hex[:16]}"
    asyncio.run(_pg_admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}"))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_pg_drop(name))


def _env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return server_env(
        db_url,
        tmp_path,
        AGENTCTL_ADMIN_TOKEN=ADMIN_TOKEN,
        AGENTCTL_ISSUER="http://agentctl.test",
        AGENTCTL_KEY_ENCRYPTION_KEY="k" * 43,
        AGENTCTL_AUDIT_CHECKPOINT_SECONDS="0.5",
        AGENTCTL_DATABASE_POOL_SIZE="10",
    )


async def _agent_headers(url: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        me = await decider(client, ADMIN, scopes=["audit:write"])
    headers: dict[str, str] = me["headers"]
    return headers


async def _writer(
    url: str, headers: dict[str, str], records: list[dict[str, Any]], acked: dict[str, int]
) -> None:
    """Send in batches, retrying each batch with the same ids until it gets a 2xx."""
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        for start in range(0, len(records), BATCH):
            batch = records[start : start + BATCH]
            while True:
                try:
                    r = await client.post("/v1/audit/records", json={"records": batch})
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
                    continue
                if r.status_code == 200:
                    for item in r.json()["records"]:
                        assert item["status"] in ("stored", "duplicate"), item
                        acked[item["id"]] = acked.get(item["id"], 0) + 1
                    break
                assert r.status_code in (500, 502, 503, 504), r.text
                await asyncio.sleep(0.2)


async def _settled(url: str, total: int) -> list[dict[str, Any]]:
    """Wait until a checkpoint covers ``total`` leaves and the log verifies; the export."""
    async with httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=120) as client:
        for _ in range(600):
            r = await client.get("/v1/audit/logs/payments/checkpoint")
            if r.status_code == 200 and int(r.text.split("\n")[1]) >= total:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the log was not sequenced and checkpointed in time")
        verdict = (await client.get("/v1/audit/verify")).json()
        assert verdict["ok"] is True, verdict
        assert verdict["logs"][0]["size"] == total
        r = await client.get("/v1/audit/export", params={"domain": "payments"})
        return [json.loads(line) for line in r.text.splitlines()]


def _check_exactly_once(lines: list[dict[str, Any]], acked: dict[str, int], total: int) -> None:
    assert [line["index"] for line in lines] == list(range(total))  # contiguous from 0
    ids = [line["record"]["id"] for line in lines]
    assert len(set(ids)) == len(ids) == total  # no record twice
    assert set(acked) <= set(ids)  # every acknowledged record is there


async def _ingest(urls: list[str], headers: dict[str, str], acked: dict[str, int]) -> list[Any]:
    work = [
        [record(rationale=f"w{w}") for _ in range(RECORDS_PER_WRITER)]
        for w in range(len(urls) * WRITERS_PER_SERVER)
    ]
    await asyncio.gather(
        *(_writer(urls[w % len(urls)], headers, records, acked) for w, records in enumerate(work))
    )
    return work


def test_two_servers_sixteen_writers(pg_url: str, tmp_path: Path) -> None:
    total = SERVERS * WRITERS_PER_SERVER * RECORDS_PER_WRITER
    env = _env(pg_url, tmp_path)
    with ExitStack() as stack:
        urls = [stack.enter_context(serving(env, tmp_path / f"s{i}.log")) for i in range(SERVERS)]

        async def scenario() -> None:
            headers = await _agent_headers(urls[0])
            acked: dict[str, int] = {}
            await _ingest(urls, headers, acked)
            assert len(acked) == total
            _check_exactly_once(await _settled(urls[1], total), acked, total)

        asyncio.run(scenario())


def test_postgres_crash_in_the_middle_of_ingest(tmp_path: Path) -> None:
    total = SERVERS * WRITERS_PER_SERVER * RECORDS_PER_WRITER
    with PrivateCluster(tmp_path) as pg, ExitStack() as stack:
        env = _env(pg.url, tmp_path)
        urls = [stack.enter_context(serving(env, tmp_path / f"s{i}.log")) for i in range(SERVERS)]

        async def crash_when(acked: dict[str, int]) -> None:
            while len(acked) < total // 3:
                await asyncio.sleep(0.05)
            try:
                await asyncio.to_thread(pg.stop, "immediate")
                await asyncio.sleep(1.0)
                await asyncio.to_thread(pg.start)
            except subprocess.CalledProcessError as exc:
                pytest.fail(f"pg_ctl failed: {exc.stdout} {exc.stderr}")

        async def scenario() -> None:
            headers = await _agent_headers(urls[0])
            acked: dict[str, int] = {}
            crash = asyncio.create_task(crash_when(acked))
            work = await _ingest(urls, headers, acked)
            await crash
            assert len(acked) == total
            _check_exactly_once(await _settled(urls[0], total), acked, total)
            # Clients that retry with the same ids are told "duplicate", and nothing changes.
            async with httpx.AsyncClient(base_url=urls[1], headers=headers, timeout=60) as c:
                for records in work[:2]:
                    r = await c.post("/v1/audit/records", json={"records": records[:BATCH]})
                    assert {x["status"] for x in r.json()["records"]} == {"duplicate"}
            _check_exactly_once(await _settled(urls[1], total), acked, total)

        asyncio.run(scenario())

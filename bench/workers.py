"""Issue 15's figure: POST /v1/decisions throughput of one replica with 1, 2 and 4 worker
processes (``agentctl serve --workers N``) on PostgreSQL.

Each run gets a fresh database cloned from nothing (``serve`` migrates it). The load comes from
one Python process with CONCURRENCY connections on the same machine, so on a small machine the
client's own CPU caps what more workers can show: read the figures as relative, and the cores
they had (printed).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import uuid
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench.decisions import _agent_token, _inputs
from bench.servers import bench_env, measure, row
from tests.ops.servers import start, stop

SECONDS = 4.0
CONCURRENCY = 16
WORKERS = tuple(int(w) for w in os.environ.get("BENCH_WORKERS", "1,2,4").split(","))


def _pg_url() -> str | None:
    url = os.environ.get("AGENTCTL_BENCH_DATABASE_URL") or os.environ.get(
        "AGENTCTL_TEST_DATABASE_URL"
    )
    return url if url and url.startswith("postgresql") else None


async def _admin(url: str, sql: str) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _throughput(url: str) -> dict[str, float]:
    headers, _ = await _agent_token(url)
    bodies = itertools.cycle(_inputs())
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as c:

        async def call() -> None:
            r = await c.post("/v1/decisions", json=next(bodies))
            assert r.status_code == 200, r.text

        await measure(call, seconds=1.0, concurrency=CONCURRENCY)
        return await measure(call, seconds=SECONDS, concurrency=CONCURRENCY)


def main() -> None:
    base = _pg_url()
    print(
        f"decisions by worker count (issue 15): PostgreSQL, {CONCURRENCY} concurrent clients, "
        f"{SECONDS:.0f} s each, {os.cpu_count()} cores shared by client and server"
    )
    if base is None:
        print("  skipped: set AGENTCTL_BENCH_DATABASE_URL or AGENTCTL_TEST_DATABASE_URL")
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in WORKERS:
            name = f"bench_workers_{workers}_{uuid.uuid4().hex[:8]}"
            asyncio.run(_admin(base, f"CREATE DATABASE {name}"))
            db_url = make_url(base).set(database=name).render_as_string(hide_password=False)
            data = Path(tmp) / str(workers)
            data.mkdir()
            env = bench_env(db_url, data)
            server = start(env, data / "server.log", "--workers", str(workers))
            try:
                results[workers] = asyncio.run(_throughput(server.url))
            finally:
                stop(server)
                asyncio.run(_admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    for workers, m in results.items():
        print(row(f"POST /v1/decisions, --workers {workers}", m))
    one = results[1]["rps"]
    print(
        "  scaling: " + ", ".join(f"{w} workers x{m['rps'] / one:.2f}" for w, m in results.items())
    )


if __name__ == "__main__":
    main()

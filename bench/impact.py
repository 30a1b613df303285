"""Impact analysis figures (issue 14): replaying 10,000 stored decisions against a candidate
revision that tightens one rule, in process on SQLite (PostgreSQL too with ``--database-url``).

    .venv/bin/python -m bench.impact [--n 10000] [--database-url postgresql+asyncpg://...]

A few decisions are taken over HTTP (so the stored rows are what the service writes); the rest
are copies of them with new ids and amounts, inserted directly (taking 10,000 decisions over
HTTP would time the decision path, not the replay). The candidate (autonomy level 1 asks for
approval above 50 instead of 100) is uploaded over HTTP and compiled by the pinned OPA
(``AGENTCTL_OPA_BIN``). Printed: the time of the whole analysis (a background job, polled), its
rate, whether the report names exactly the expected decisions, the most decision rows held at
once (the largest page read: the bound on decisions in memory), and the peak Python heap
(tracemalloc, second runs) for N/5 and N decisions. The heap peak also counts what is not
decisions: SQLAlchemy's statement cache (bounded) and cyclic garbage the app's GC tuning
collects late (``app.py``), so it grows slightly with the run's length; five times the
decisions does not give five times the peak.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa


async def _seed(db_url: str, n: int, client: httpx.AsyncClient, admin: dict[str, str]) -> int:
    """``n`` stored decisions; returns how many the candidate must change (amount 51..100)."""
    from control_plane.kit.db import create_engine
    from control_plane.kit.ids import uuid7
    from control_plane.models import Decision
    from tests.fixtures.decisions import REFUND, decider

    me = await decider(client, admin, name="refund-bot")
    r = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
    assert r.status_code == 200, r.text
    engine = create_engine(db_url)
    table = Decision.__table__  # type: ignore[attr-defined]
    expected = 0
    try:
        async with engine.begin() as conn:
            template = dict((await conn.execute(sa.select(table))).mappings().one())
            await conn.execute(table.delete())
            rows: list[dict[str, Any]] = []
            for i in range(n):
                amount = (i * 7) % 200
                row = copy.deepcopy(template)
                row["id"] = uuid7()
                row["input"]["resource"]["amount"] = amount
                row["resource"]["amount"] = amount
                allowed = amount <= 100
                row["effect"] = "allow" if allowed else "require_approval"
                row["allow"] = allowed
                row["reasons"] = [] if allowed else ["amount_requires_approval"]
                expected += 50 < amount <= 100
                rows.append(row)
                if len(rows) == 1000:
                    await conn.execute(sa.insert(table), rows)
                    rows = []
            if rows:
                await conn.execute(sa.insert(table), rows)
    finally:
        await engine.dispose()
    return expected


def _candidate() -> dict[str, Any]:
    from tests.impact.support import tighter_refunds

    return tighter_refunds(50)


async def _analyse(client: httpx.AsyncClient, admin: dict[str, str], path: str, n: int) -> Any:
    r = await client.post(path, json={"background": True, "limit": n}, headers=admin)
    assert r.status_code == 202, r.text
    job = r.json()
    while job["status"] == "running":
        await asyncio.sleep(0.2)
        job = (await client.get(f"{path}/{job['id']}", headers=admin)).json()
    assert job["status"] == "succeeded", job
    return job["report"]


async def run(db_url: str, n: int, work: Path) -> None:
    from control_plane.app import create_app
    from control_plane.config import Settings
    from control_plane.decisions import service as decisions
    from control_plane.migrate import upgrade
    from tests.conftest import ADMIN_TOKEN, _bootstrap

    await asyncio.to_thread(upgrade, db_url)
    settings = Settings(
        database_url=db_url, data_dir=work / "data", environment="test", issuer="http://bench"
    )
    await _bootstrap(settings)  # the tests' bootstrap admin and the shipped policy

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    held = 0
    read_page = decisions.replay_page

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal held
        page = await read_page(*args, **kwargs)
        held = max(held, len(page))
        return page

    decisions.replay_page = counting  # type: ignore[assignment]
    app = create_app(settings, tune_collector=True)  # as agentctl serve
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=300
        ) as client:
            expected = await _seed(db_url, n, client, admin)
            r = await client.post(
                "/v1/policies/default/revisions", json=_candidate(), headers=admin
            )
            assert r.status_code == 201, r.text
            path = f"/v1/policies/default/revisions/{r.json()['revision']}/impact"

            t0 = time.perf_counter()
            report = await _analyse(client, admin, path, n)
            elapsed = time.perf_counter() - t0
            changed = report["changes"].get("allow->require_approval", 0)
            exact = changed == expected and len(report["changes"]) == 1
            print(
                f"  {db_url.split(':')[0]:22} {report['total']:>6} decisions "
                f"{elapsed:7.2f} s {report['total'] / elapsed:7.0f}/s  changed {changed} "
                f"(expected {expected}: {'exact' if exact else 'WRONG'})  "
                f"rows held at most {held}"
            )
            peaks = []
            for size in (n // 5, n):
                tracemalloc.start()
                await _analyse(client, admin, path, size)
                peaks.append((size, tracemalloc.get_traced_memory()[1]))
                tracemalloc.stop()
            print(
                "  peak Python heap during the run: "
                + ", ".join(f"{s} decisions {p / 2**20:.1f} MiB" for s, p in peaks)
            )
    decisions.replay_page = read_page  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = args.database_url or f"sqlite+aiosqlite:///{work / 'impact.db'}"
        asyncio.run(run(url, args.n, work))


if __name__ == "__main__":
    main()

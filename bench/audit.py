"""Issue 9's figures, side by side in one run on PostgreSQL:

1. ingest: POST /v1/audit/records on real servers, records/s at batch sizes 1, 100 and 1,000,
   against raw asyncpg ``copy_records_to_table`` of rows of the same shape into a table of the
   same shape (the ratio is what validation, redaction, RFC 8785, HMAC, the queue and the
   sequencer cost). The same CONCURRENCY clients send to one server process, then to two (one
   per core, as replicas share a database): one Python process uses one core at most, while the
   COPY clients' work runs in as many PostgreSQL backends as there are connections. The three
   are measured in turn, ROUNDS times over, and each figure is the median of its rounds, each
   ratio the median of the rounds' own ratios: this machine's speed drifts by tens of percent
   within a minute, and a ratio of two figures taken a minute apart measured the drift. The
   share of CPU time the hypervisor stole during the ingest rounds is printed with them.
   The records are made before each figure's clock starts (TEMPLATES of them, each sent with a
   fresh id): the HTTP clients send them as the SDK's flusher does (records encoded once, then
   joined into the batch's body), the COPY clients as rows of JSON text; made inside the timed
   loop, the load generator's own Python (about a tenth of the CPU of a batch) ran on the
   servers' two cores. ``--concurrency`` and ``--batches`` change the clients per figure and
   the batch sizes. The servers run in sessions of their own, as a deployed service (and
   PostgreSQL) does: Linux's autogroup scheduler shares the cores between sessions, and a
   server in the benchmark's session would share its clients' slot. On a machine that others
   load the figures move with the load average, printed with them;
2. sequencing lag: from a record's insert to its leaf (server timestamps), p50 and p99;
3. offline verification: records/s of ``agentctl audit verify`` on an export;
4. inclusion proof time on a 1M-leaf tree (``--size N`` to change; leaf hashes made in bulk).

PostgreSQL comes from AGENTCTL_BENCH_DATABASE_URL or AGENTCTL_TEST_DATABASE_URL; a fresh
database is created for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from sqlalchemy.engine import make_url

from bench.servers import ADMIN, cpu_ticks, server, steal_since
from control_plane.audit.merkle import MerkleTree, verify_inclusion
from control_plane.audit.offline import verify_export

SECONDS = 3.0
ROUNDS = 3
CONCURRENCY = 4
BATCHES: tuple[int, ...] = (1, 100, 1000)
PACED_RATE = 200.0
TEMPLATES = 1000  # records made before a figure's clock starts; each one sent has its own id


def _record() -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "timestamp": "2026-11-29T10:00:00Z",
        "action": "payments.refund",
        "resource": {"type": "order", "id": f"o-{random.randrange(10**6)}", "amount": 40},
        "inputs": {"amount": 40, "currency": "EUR", "reason": "damaged"},
        "outputs": {"refund_id": f"r-{random.randrange(10**6)}", "ok": True},
        "rationale": "The customer reported a damaged item; refund under the limit.",
        "status": "succeeded",
    }


def _http_tails() -> list[bytes]:
    """TEMPLATES records encoded as an SDK's ``audit()`` encodes them, less their ``id``: the
    bytes after ``{"id":"...",``."""
    out = []
    for _ in range(TEMPLATES):
        rec = _record()
        del rec["id"]
        out.append(orjson.dumps(rec)[1:])
    return out


def _http_record(tails: list[bytes]) -> bytes:
    """A new record: a fresh id before one of the encoded ``tails``."""
    return b'{"id":"' + str(uuid.uuid4()).encode() + b'",' + random.choice(tails)


def _dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _agent(url: str) -> dict[str, str]:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=url, headers=admin, timeout=30) as c:
        await c.post("/v1/domains", json={"name": "payments"})
        agent = (
            await c.post(
                "/v1/agents", json={"name": "bench-bot", "domain": "payments", "owner": "bench"}
            )
        ).json()
        version = (
            await c.post(
                f"/v1/agents/{agent['id']}/versions",
                json={
                    "version": "1.0.0",
                    "model_name": "m",
                    "model_version": "1",
                    "artifact_digest": "sha256:" + hashlib.sha256(b"bench").hexdigest(),
                },
            )
        ).json()
        for step in ("approve", "activate"):
            await c.post(f"/v1/agents/{agent['id']}/versions/{version['id']}/{step}")
        cred = (
            await c.post(f"/v1/agents/{agent['id']}/credentials", json={"scopes": ["audit:write"]})
        ).json()
        token = (
            await c.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(cred["client_id"], cred["client_secret"]),
            )
        ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def _http_ingest(urls: list[str], headers: dict[str, str], batch: int) -> float:
    """Records/s from CONCURRENCY clients, spread evenly over the servers at ``urls``."""
    sent = 0
    stop = time.perf_counter() + SECONDS

    tails = _http_tails()
    sending = {**headers, "Content-Type": "application/json"}

    async def worker(url: str) -> None:
        nonlocal sent
        async with httpx.AsyncClient(base_url=url, headers=sending, timeout=60) as c:
            while time.perf_counter() < stop:
                body = (
                    b'{"records":[' + b",".join(_http_record(tails) for _ in range(batch)) + b"]}"
                )
                r = await c.post("/v1/audit/records", content=body)
                r.raise_for_status()
                sent += batch

    started = time.perf_counter()
    await asyncio.gather(*(worker(urls[i % len(urls)]) for i in range(CONCURRENCY)))
    return sent / (time.perf_counter() - started)


async def _copy_ingest(dsn: str, batch: int) -> float:
    """Rows of audit_records' shape, COPYed into a table of the same shape."""
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE IF NOT EXISTS bench_copy (LIKE audit_records INCLUDING ALL)")
    await conn.close()
    sent = 0
    agent = uuid.uuid4()
    stamp = datetime.now(UTC)
    tails = [
        ("payments", agent, "action", rec["action"], "succeeded", None, None, stamp, "0" * 64,
         orjson.dumps(rec).decode(), stamp)
        for rec in (_record() for _ in range(TEMPLATES))
    ]  # fmt: skip
    stop = time.perf_counter() + SECONDS

    async def worker() -> None:
        nonlocal sent
        conn = await asyncpg.connect(dsn)
        try:
            while time.perf_counter() < stop:
                rows = [(uuid.uuid4(), *random.choice(tails)) for _ in range(batch)]
                await conn.copy_records_to_table("bench_copy", records=rows)
                sent += batch
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return sent / (time.perf_counter() - started)


async def _paced(url: str, headers: dict[str, str], rate: float) -> list[uuid.UUID]:
    """Send about ``rate`` records/s (batches of 10 from CONCURRENCY clients) for SECONDS."""
    ids: list[uuid.UUID] = []
    interval = 10 * CONCURRENCY / rate
    stop = time.perf_counter() + SECONDS

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as c:
            while time.perf_counter() < stop:
                tick = time.perf_counter()
                records = [_record() for _ in range(10)]
                r = await c.post("/v1/audit/records", json={"records": records})
                r.raise_for_status()
                ids.extend(uuid.UUID(x["id"]) for x in records)
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - tick)))

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return ids


async def _lag(dsn: str, ids: list[uuid.UUID]) -> tuple[float, float, int]:
    """From the record's insert to its leaf's insert (both server clocks), for ``ids``."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM l.created_at - r.created_at) AS lag "
            "FROM audit_leaves l JOIN audit_records r ON r.id = l.record_id "
            "WHERE r.id = ANY($1::uuid[])",
            ids,
        )
    finally:
        await conn.close()
    lags = sorted(float(r["lag"]) for r in rows)
    return (
        statistics.median(lags),
        lags[min(len(lags) - 1, int(len(lags) * 0.99))],
        len(lags),
    )


async def _wait_sequenced(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(3000):
            if not await conn.fetchval("SELECT count(*) FROM audit_pending"):
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def _log_size(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value: int = await conn.fetchval("SELECT count(*) FROM audit_leaves")
        return value
    finally:
        await conn.close()


def _proof_timing(size: int) -> tuple[float, float]:
    """Seconds to build the tree from bulk leaf hashes; microseconds per inclusion proof."""
    leaves = os.urandom(32 * size)
    started = time.perf_counter()
    tree = MerkleTree()
    tree.extend_from_buffer(leaves)
    built = time.perf_counter() - started
    root = tree.root()
    rng = random.Random(1)
    picks = [rng.randrange(size) for _ in range(2000)]
    started = time.perf_counter()
    proofs = [tree.inclusion_proof(i, size) for i in picks]
    per_proof = (time.perf_counter() - started) / len(picks) * 1e6
    assert all(
        verify_inclusion(i, size, tree.leaf(i), p, root) for i, p in zip(picks, proofs, strict=True)
    )
    return built, per_proof


def main(argv: list[str] | None = None) -> None:
    global CONCURRENCY, BATCHES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="leaves for the proof figure")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="clients per figure")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="batch sizes")
    args = parser.parse_args(argv)
    CONCURRENCY = args.concurrency
    BATCHES = tuple(int(b) for b in args.batches.split(","))
    base = os.environ.get("AGENTCTL_BENCH_DATABASE_URL") or os.environ.get(
        "AGENTCTL_TEST_DATABASE_URL"
    )
    print(f"audit log (issue 9): {CONCURRENCY} concurrent clients, {SECONDS:.0f} s per figure")
    if base is None or not base.startswith("postgresql"):
        print("  skipped: set AGENTCTL_BENCH_DATABASE_URL (or AGENTCTL_TEST_DATABASE_URL) to a "
              "PostgreSQL URL")  # fmt: skip
    else:
        asyncio.run(_on_postgres(base))
    built, per_proof = _proof_timing(args.size)
    print(
        f"  inclusion proof, {args.size:,} leaves: {per_proof:8.1f} us per proof "
        f"(tree built from bulk leaf hashes in {built:.1f} s)"
    )


async def _on_postgres(base: str) -> None:
    name = f"acp_bench_audit_{os.getpid()}"
    admin_conn = await asyncpg.connect(_dsn(base))
    await admin_conn.execute(f"DROP DATABASE IF EXISTS {name}")
    await admin_conn.execute(f"CREATE DATABASE {name}")
    await admin_conn.close()
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    dsn = _dsn(base, name)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["AGENTCTL_BENCH_DATABASE_URL"] = url
            # The shipped checkpoint interval (10 s): the figures are those of the default
            # configuration (a checkpoint each second cost the servers about 4% of their CPU).
            with (
                server(Path(tmp) / "a", own_session=True) as srv,
                server(Path(tmp) / "b", own_session=True) as other,
            ):
                headers = await _agent(srv)
                load = os.getloadavg()
                ticks = cpu_ticks()
                results = []
                for batch in BATCHES:
                    rounds = []
                    for _ in range(ROUNDS):
                        one = await _http_ingest([srv], headers, batch)
                        two = await _http_ingest([srv, other], headers, batch)
                        copy = await _copy_ingest(dsn, batch)
                        rounds.append((one, two, copy))
                    results.append((batch, rounds))
                stolen = steal_since(ticks)
                await _wait_sequenced(dsn)
                paced = await _paced(srv, headers, PACED_RATE)
                await _wait_sequenced(dsn)
                p50, p99, lagged = await _lag(dsn, paced)
                n = await _log_size(dsn)
                admin = {"Authorization": f"Bearer {ADMIN}"}
                async with httpx.AsyncClient(base_url=srv, headers=admin, timeout=600) as c:
                    for _ in range(100):
                        note = (await c.get("/v1/audit/logs/payments/checkpoint")).text
                        size = int(note.split("\n")[1]) if note[:1] != "{" else 0
                        if size >= n:
                            break
                        await asyncio.sleep(0.2)
                    key = (await c.get("/v1/audit/keys")).json()["keys"][0]["verifier_key"]
                    export = (await c.get("/v1/audit/export", params={"domain": "payments"})).text
        print(
            f"  load average before ingest: {load[0]:.1f} (1 min), {load[1]:.1f} (5 min); "
            f"{stolen} during it"
        )
        print(
            f"  ingest: medians of {ROUNDS} rounds; each ratio's range over the rounds in brackets"
        )
        for batch, rounds in results:
            one, two, copy = (statistics.median(r[k] for r in rounds) for k in range(3))
            ones = sorted(r[0] / r[2] for r in rounds)
            twos = sorted(r[1] / r[2] for r in rounds)
            print(
                f"  ingest, batch {batch:>5}: raw COPY {copy:>7.0f} rec/s; HTTP, 1 server process "
                f"{one:>6.0f} rec/s (ratio {statistics.median(ones):.3f} "
                f"[{ones[0]:.3f}-{ones[-1]:.3f}]), 2 processes {two:>6.0f} rec/s "
                f"(ratio {statistics.median(twos):.3f} [{twos[0]:.3f}-{twos[-1]:.3f}])"
            )
        print(
            f"  sequencing lag at ~{PACED_RATE:.0f} rec/s ({lagged:,} records): "
            f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
        )
        lines = export.splitlines()
        started = time.perf_counter()
        status = verify_export(lines, note, key)
        rate = len(lines) / (time.perf_counter() - started)
        assert status.ok, status
        print(f"  offline verification: {rate:>9.0f} records/s ({len(lines):,} records, ok)")
    finally:
        os.environ.pop("AGENTCTL_BENCH_DATABASE_URL", None)
        admin_conn = await asyncpg.connect(_dsn(base))
        await admin_conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin_conn.close()


if __name__ == "__main__":
    main()

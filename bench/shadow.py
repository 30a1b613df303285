"""Issue 14's figure: the decision path with shadow evaluation off and on, side by side in one
run on one server (wasm engine), on SQLite and, when AGENTCTL_BENCH_DATABASE_URL (or
AGENTCTL_TEST_DATABASE_URL) names a PostgreSQL server, on a fresh PostgreSQL database too.

The shadow revision denies everything, so every decision is a difference and is written (the
worst case for the shadow's writes). The machine may be shared, so each load runs ROUNDS pairs
of rounds, alternating (off-on, on-off, off-on, ...), and the figure is the median of the
pairs' p50 ratios (on / off): drift in the machine's load falls on both sides of a pair. After
each round the bench pauses (SETTLE_SECONDS, both sides alike) so that a round's last shadow
differences are written before the next round (and billed to its own CPU time), and checks
that each difference was written once. Two loads:

- open loop at a fixed rate (half what the path sustains with shadow off, measured first): the
  latency a decision sees at a given load, the figure the bound is about. Must hold: the median
  p50 ratio is at most 1.10;
- closed loop at saturation (clients back to back): shadow evaluation is extra CPU in the same
  process, so at saturation it costs some throughput; printed for what it is.

Also printed: the machine's load average (1 min) before and after, the server's CPU time per
decision on each side (its own counters, less sensitive to other load than latency), and the
shadow evaluations counted by outcome (dropped: the bounded queue was full).

``python -m bench.shadow [SECONDS_PER_ROUND] [ROUNDS]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from bench.decisions import _agent_token, _inputs
from bench.servers import ADMIN, bench_env, row
from bench.workers import _admin, _pg_url
from tests.canary.helpers import deny_all
from tests.fixtures.servers import start_server

SECONDS = 3.0
ROUNDS = 5
CONCURRENCY = 4
BOUND = 1.10
#: After each round: the shadow writes what is pending within 1 s (policy.shadow.LINGER_SECONDS).
SETTLE_SECONDS = 1.5


@dataclass
class Side:
    """What one side (shadow off or on) measured over its rounds."""

    latencies: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    seconds: float = 0.0


def _cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _figures(latencies: list[float], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "rps": len(ordered) / seconds,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


async def _closed(c: httpx.AsyncClient, bodies: Iterator[Any], seconds: float) -> list[float]:
    """CONCURRENCY clients back to back for ``seconds``."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            r = await c.post("/v1/decisions", json=next(bodies))
            latencies.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return latencies


async def _open(
    c: httpx.AsyncClient, bodies: Iterator[Any], seconds: float, rate: float
) -> list[float]:
    """Requests started every 1/rate s whatever the answers (open loop)."""
    latencies: list[float] = []

    async def one() -> None:
        t0 = time.perf_counter()
        r = await c.post("/v1/decisions", json=next(bodies))
        latencies.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text

    tasks = []
    start = time.perf_counter()
    for i in range(int(seconds * rate)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies


class _Bench:
    def __init__(self, url: str, pid: int, seconds: float, rounds: int) -> None:
        self.url, self.pid, self.seconds, self.rounds = url, pid, seconds, rounds
        self.shadowed = 0  # decisions made with the shadow on: each one a difference

    async def run(self) -> dict[str, Any]:
        headers, _ = await _agent_token(self.url)
        bodies = itertools.cycle(_inputs())
        admin = {"Authorization": f"Bearer {ADMIN}"}
        async with (
            httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60) as c,
            httpx.AsyncClient(base_url=self.url, headers=admin, timeout=60) as a,
        ):
            r = await a.post("/v1/policies/default/revisions", json=deny_all())
            assert r.status_code == 201, r.text
            self.revision = r.json()["revision"]
            await _closed(c, bodies, 0.5)  # warm up both engines
            await self._shadow(a, True)
            self.shadowed += len(await _closed(c, bodies, 0.5))
            await self._written(a)

            closed = await self._rounds(a, lambda: _closed(c, bodies, self.seconds))
            rate = max(1.0, _figures(closed[0].latencies, closed[0].seconds)["rps"] / 2)
            opened = await self._rounds(a, lambda: _open(c, bodies, self.seconds, rate))
            summary = (await a.get("/v1/policies/default/shadow/summary")).json()
            metrics = (await a.get("/metrics")).text
        counted = [
            line
            for line in metrics.splitlines()
            if line.startswith("agentctl_shadow_evaluations_total")
        ]
        return {
            "open": opened,
            "closed": closed,
            "rate": rate,
            "stored": summary["total"],
            "shadowed": self.shadowed,
            "counted": "; ".join(counted),
        }

    async def _shadow(self, a: httpx.AsyncClient, on: bool) -> None:
        if on:
            r = await a.put("/v1/policies/default/shadow", json={"revision": self.revision})
        else:
            r = await a.delete("/v1/policies/default/shadow")
        assert r.status_code == 200, r.text

    async def _written(self, a: httpx.AsyncClient) -> None:
        """Wait until every shadowed decision's difference is stored; fail if one is not, or
        is stored twice."""
        deadline = time.monotonic() + 60
        while True:
            total = (await a.get("/v1/policies/default/shadow/summary")).json()["total"]
            if total == self.shadowed:
                return
            assert total < self.shadowed, f"{total} differences for {self.shadowed} decisions"
            assert time.monotonic() < deadline, f"{total} of {self.shadowed} differences stored"
            await asyncio.sleep(0.1)

    async def _rounds(self, a: httpx.AsyncClient, load: Any) -> tuple[Side, Side]:
        off, on = Side(), Side()
        for i in range(self.rounds):
            for shadow in (False, True) if i % 2 == 0 else (True, False):
                await self._shadow(a, shadow)
                side = on if shadow else off
                cpu, started = _cpu(self.pid), time.perf_counter()
                latencies = await load()
                side.seconds += time.perf_counter() - started
                # Both sides alike: a pause without requests in which the shadow's last
                # differences are written, then the server's CPU time.
                await asyncio.sleep(SETTLE_SECONDS)
                side.cpu_seconds += _cpu(self.pid) - cpu
                if shadow:
                    self.shadowed += len(latencies)
                    await self._written(a)
                side.latencies += latencies
                side.p50s.append(statistics.median(latencies))
        return off, on


@contextlib.contextmanager
def _server(db_url: str, data: Path) -> Iterator[tuple[str, int]]:
    env = bench_env(db_url, data)
    data.mkdir(parents=True, exist_ok=True)
    server = start_server(env, data / "server.log")
    try:
        yield server.url, server.proc.pid
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=60)
    errors = server.errors()
    assert not errors, "the server answered 500 or failed unhandled:\n" + "\n".join(errors)


def _report(name: str, off: Side, on: Side) -> tuple[float, float]:
    f_off = _figures(off.latencies, off.seconds)
    f_on = _figures(on.latencies, on.seconds)
    print(row(f"{name}, shadow off", f_off))
    print(row(f"{name}, shadow on (every one differs)", f_on))
    ratios = [b / a for a, b in zip(off.p50s, on.p50s, strict=True)]
    median = statistics.median(ratios)
    print(
        f"    p50 on/off per pair: {' '.join(f'{r:.2f}' for r in ratios)}; "
        f"median x{median:.3f}; pooled p50 x{f_on['p50_ms'] / f_off['p50_ms']:.3f}, "
        f"p99 x{f_on['p99_ms'] / f_off['p99_ms']:.3f}"
    )
    cpu_off = off.cpu_seconds / max(1, f_off["n"]) * 1000
    cpu_on = on.cpu_seconds / max(1, f_on["n"]) * 1000
    print(f"    server CPU per decision: off {cpu_off:.2f} ms, on {cpu_on:.2f} ms")
    return median, f_on["rps"] / f_off["rps"]


def _one(label: str, db_url: str, data: Path, seconds: float, rounds: int) -> float:
    load_before = os.getloadavg()[0]
    with _server(db_url, data) as (url, pid):
        out = asyncio.run(_Bench(url, pid, seconds, rounds).run())
    load_after = os.getloadavg()[0]
    print(
        f"  {label}: load average (1 min) {load_before:.1f} before, {load_after:.1f} after, "
        f"{os.cpu_count()} cores"
    )
    print(f"  open loop at {out['rate']:.0f}/s (half the shadow-off saturation rate):")
    ratio, _ = _report("POST /v1/decisions", *out["open"])
    verdict = "holds" if ratio <= BOUND else "DOES NOT HOLD"
    print(f"    shadow on vs off, median p50 ratio x{ratio:.3f} (bound x{BOUND:.2f}: {verdict})")
    print(f"  closed loop, {CONCURRENCY} clients back to back (saturation):")
    _, throughput = _report("POST /v1/decisions", *out["closed"])
    print(f"    throughput on/off x{throughput:.3f}")
    once = "each once" if out["stored"] == out["shadowed"] else "NOT each once"
    print(
        f"  {out['shadowed']} decisions with shadow on, {out['stored']} differences stored "
        f"({once}); {out['counted']}"
    )
    return ratio


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    seconds = float(args[0]) if args else SECONDS
    rounds = int(args[1]) if len(args) > 1 else ROUNDS
    print(
        f"shadow evaluation (issue 14): {CONCURRENCY} concurrent clients, {rounds} pairs of "
        f"{seconds:.0f} s rounds per load, alternating off-on / on-off"
    )
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite+aiosqlite:///{Path(tmp) / 'sqlite' / 'agentctl.db'}"
        _one("SQLite", sqlite_url, Path(tmp) / "sqlite", seconds, rounds)
        base = _pg_url()
        if base is None:
            print("  PostgreSQL: skipped (set AGENTCTL_BENCH_DATABASE_URL)")
            return
        name = f"bench_shadow_{uuid.uuid4().hex[:8]}"
        asyncio.run(_admin(base, f"CREATE DATABASE {name}"))
        try:
            db_url = make_url(base).set(database=name).render_as_string(hide_password=False)
            _one("PostgreSQL", db_url, Path(tmp) / "pg", seconds, rounds)
        finally:
            asyncio.run(_admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


if __name__ == "__main__":
    main()

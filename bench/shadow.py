"""Issue 14's figure: the decision path with shadow evaluation off and on, side by side in one
run on one server (wasm engine, SQLite unless AGENTCTL_BENCH_DATABASE_URL).

The shadow revision denies everything, so every decision is a difference and is written (the
worst case for the shadow's writes). Phases alternate (off, on, off, on) so drift on a shared
machine falls on both; the latencies of each side are pooled. Two loads:

- open loop at a fixed rate (half what the path sustains with shadow off, measured first): the
  latency a decision sees at a given load, the figure the bound is about. Must hold: p50 with
  shadow on is at most 1.10 x p50 with it off;
- closed loop at saturation (clients back to back): shadow evaluation is extra CPU in the same
  process, so at saturation it costs throughput; printed for what it is.

Also printed: the shadow evaluations counted by outcome (dropped: the bounded queue was full).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.decisions import _agent_token, _inputs
from bench.servers import ADMIN, row
from bench.servers import server as serve
from tests.canary.helpers import deny_all

SECONDS = 3.0
CONCURRENCY = 4
ROUNDS = 2


async def _phase(c: httpx.AsyncClient, bodies: itertools.cycle, seconds: float) -> list[float]:  # type: ignore[type-arg]
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


def _figures(latencies: list[float], seconds: float) -> dict[str, float]:
    latencies.sort()
    return {
        "n": len(latencies),
        "rps": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


async def _open_phase(
    c: httpx.AsyncClient,
    bodies: itertools.cycle,  # type: ignore[type-arg]
    seconds: float,
    rate: float,
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


async def _run(
    url: str, seconds: float
) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, float], float, str]:
    headers, _ = await _agent_token(url)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    bodies = itertools.cycle(_inputs())
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as c,
        httpx.AsyncClient(base_url=url, headers=admin, timeout=60) as a,
    ):
        r = await a.post("/v1/policies/default/revisions", json=deny_all())
        assert r.status_code == 201, r.text
        shadow = r.json()["revision"]
        await _phase(c, bodies, 0.5)  # warm up both engines
        await a.put("/v1/policies/default/shadow", json={"revision": shadow})
        await _phase(c, bodies, 0.5)
        off: list[float] = []
        on: list[float] = []
        for _ in range(ROUNDS):
            await a.delete("/v1/policies/default/shadow")
            off += await _phase(c, bodies, seconds)
            await a.put("/v1/policies/default/shadow", json={"revision": shadow})
            on += await _phase(c, bodies, seconds)
        span = seconds * ROUNDS
        closed_off, closed_on = _figures(off, span), _figures(on, span)
        rate = max(1.0, closed_off["rps"] / 2)
        off, on = [], []
        for _ in range(ROUNDS):
            await a.delete("/v1/policies/default/shadow")
            off += await _open_phase(c, bodies, seconds, rate)
            await a.put("/v1/policies/default/shadow", json={"revision": shadow})
            on += await _open_phase(c, bodies, seconds, rate)
        await asyncio.sleep(1)  # let the queue drain before reading the counters
        metrics = (await a.get("/metrics")).text
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith("agentctl_shadow_evaluations_total")
    ]
    open_off, open_on = _figures(off, span), _figures(on, span)
    return open_off, open_on, closed_off, closed_on, rate, "; ".join(counted)


def main(argv: list[str] | None = None) -> None:
    seconds = float((argv or sys.argv[1:] or [SECONDS])[0])
    print(
        f"shadow evaluation (issue 14): {CONCURRENCY} concurrent clients, "
        f"{ROUNDS} x {seconds:.0f} s per side, alternating"
    )
    with tempfile.TemporaryDirectory() as tmp, serve(Path(tmp) / "shadow") as url:
        off, on, closed_off, closed_on, rate, counted = asyncio.run(_run(url, seconds))
    print(f"  open loop at {rate:.0f}/s (half the shadow-off saturation rate):")
    print(row("POST /v1/decisions, shadow off", off))
    print(row("POST /v1/decisions, shadow on (every one differs)", on))
    ratio = on["p50_ms"] / off["p50_ms"]
    verdict = "holds" if ratio <= 1.10 else "DOES NOT HOLD"
    print(f"  shadow on vs off: p50 x{ratio:.3f} (bound x1.10: {verdict})")
    print(f"  closed loop, {CONCURRENCY} clients back to back (saturation):")
    print(row("POST /v1/decisions, shadow off", closed_off))
    print(row("POST /v1/decisions, shadow on (every one differs)", closed_on))
    print(
        f"  shadow on vs off at saturation: p50 x{closed_on['p50_ms'] / closed_off['p50_ms']:.3f}"
    )
    print(f"  {counted}")


if __name__ == "__main__":
    main()

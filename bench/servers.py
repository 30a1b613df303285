"""Real server processes and small load helpers shared by the HTTP benchmarks."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.fixtures.servers import server_env, serving

ADMIN = "acp_op_bench-admin-token-0123456789abcdefghij"
KEK = "bench-key-encryption-key-0123456789abcdefghijkl"


def bench_env(db_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a benchmarked ``agentctl serve``: the bench's admin token and KEK, a
    fixed issuer, warnings-only logs, and ``extra``."""
    return server_env(
        db_url,
        data_dir,
        AGENTCTL_ADMIN_TOKEN=ADMIN,
        AGENTCTL_KEY_ENCRYPTION_KEY=KEK,
        AGENTCTL_ISSUER="http://bench.test",
        AGENTCTL_LOG_LEVEL="WARNING",
        **extra,
    )


@contextmanager
def server(data_dir: Path, *, own_session: bool = False, **env_extra: str) -> Iterator[str]:
    """``agentctl serve`` on SQLite in ``data_dir`` (or AGENTCTL_BENCH_DATABASE_URL);
    ``own_session``: see ``tests.fixtures.servers.start_server``."""
    db_url = os.environ.get(
        "AGENTCTL_BENCH_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / 'agentctl.db'}"
    )
    env = bench_env(db_url, data_dir, **env_extra)
    data_dir.mkdir(parents=True, exist_ok=True)
    with serving(env, data_dir / "server.log", own_session=own_session) as url:
        yield url


async def measure(
    call: Callable[[], Awaitable[object]], *, seconds: float, concurrency: int
) -> dict[str, float]:
    """Run ``call`` from ``concurrency`` workers for ``seconds``; latency percentiles and rate."""
    import asyncio

    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "n": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def row(name: str, m: dict[str, float]) -> str:
    return (
        f"  {name:<44} {m['rps']:>9.0f}/s   p50 {m['p50_ms']:>7.2f} ms   "
        f"p99 {m['p99_ms']:>7.2f} ms   (n={m['n']:.0f})"
    )


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) CPU time of all CPUs since boot, in clock ticks, from the first line of
    ``/proc/stat`` (Linux; ``(0, 0)`` where it cannot be read). Steal is the time a virtual
    machine's CPUs were ready to run but the hypervisor ran someone else: on a machine that
    loses a tenth of its time that way, latencies and rates move with it."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def steal_since(start: tuple[int, int]) -> str:
    """The share of CPU time stolen since ``start`` (``cpu_ticks``), as ``"12% CPU steal"``, or
    ``"CPU steal unknown"``."""
    steal, total = cpu_ticks()
    if total <= start[1]:
        return "CPU steal unknown"
    return f"{100 * (steal - start[0]) / (total - start[1]):.0f}% CPU steal"

"""Real server processes and small load helpers shared by the HTTP benchmarks."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "acp_op_bench-admin-token-0123456789abcdefghij"
KEK = "bench-key-encryption-key-0123456789abcdefghijkl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def server(data_dir: Path, **env_extra: str) -> Iterator[str]:
    """``agentctl serve`` on SQLite in ``data_dir`` (or AGENTCTL_BENCH_DATABASE_URL)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCTL_")}
    env.update(
        AGENTCTL_DATA_DIR=str(data_dir),
        AGENTCTL_ADMIN_TOKEN=ADMIN,
        AGENTCTL_KEY_ENCRYPTION_KEY=KEK,
        AGENTCTL_ISSUER="http://bench.test",
        AGENTCTL_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
        **env_extra,
    )
    if os.environ.get("AGENTCTL_BENCH_DATABASE_URL"):
        env["AGENTCTL_DATABASE_URL"] = os.environ["AGENTCTL_BENCH_DATABASE_URL"]
    log = tempfile.NamedTemporaryFile(prefix="agentctl-bench-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "control_plane", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(Path(log.name).read_text())
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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

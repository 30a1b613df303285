"""Policy engine latency for the shipped policy: the wasm engine and OPA, side by side.

    python bench/bench_engines.py [--n 2000] [--concurrency 16]

Measures, on the same inputs:
- `WasmEngine.evaluate` (encoding, thread hop, validation included);
- a bare `POST /v1/data/agents/authz/decision` to OPA with a pooled httpx client;
- `OpaEngine.evaluate`;
and the throughput of each engine with concurrent callers. Then the engine table: for the wasm
engine (the module OPA compiled, policies/policy.wasm) and OPA over REST, p50 and p99 of
`evaluate`, evaluations/s with 1 and 2 threads (in process: the engine's worker threads, 16
concurrent callers; OPA: 1 and 2 concurrent callers), and resident memory per instance (in
process: RSS growth per extra loaded instance; OPA: the server's RSS). OPA comes from
`AGENTCTL_OPA_BIN` or the cache of `scripts/install-opa.sh`; without it the OPA rows are skipped.
(regopy, an embedded engine measured here before, was removed: it differed from OPA on numbers.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from control_plane.policy.bundles import read_policy_dir  # noqa: E402
from control_plane.policy.engines import LoadedBundle, encode_input  # noqa: E402
from control_plane.policy.engines.opa import OpaEngine  # noqa: E402
from control_plane.policy.engines.wasm import WasmEngine  # noqa: E402

ENTRYPOINT = "agents/authz/decision"


def inputs() -> list[dict[str, Any]]:
    base = {
        "agent": {
            "id": "agt-1",
            "name": "refund-bot",
            "domain": "payments",
            "status": "active",
            "autonomy_level": 3,
            "version": {"id": "v1", "version": "1.0.0", "state": "active"},
            "labels": {},
        },
        "action": "payments.refund",
        "resource": {"type": "payment", "id": "p1", "amount": 50, "region": "eu-west-1"},
        "context": {"time": "2024-05-06T10:00:00Z", "risk": "low"},
    }
    approval = json.loads(json.dumps(base))
    approval["agent"]["autonomy_level"] = 1
    approval["resource"]["amount"] = 500
    denied = json.loads(json.dumps(base))
    denied["agent"]["status"] = "suspended"
    windowed = json.loads(json.dumps(base))
    windowed["agent"]["name"] = "payout-bot"
    windowed["action"] = "payments.payout"
    return [base, approval, denied, windowed]


def summary(label: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p50 = ordered[len(ordered) // 2] * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    mean = statistics.fmean(ordered) * 1000
    return f"{label:<44} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   mean {mean:7.3f} ms"


async def atimed(
    n: int, docs: list[dict[str, Any]], call: Callable[[dict[str, Any]], Awaitable[Any]]
) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        await call(docs[i % len(docs)])
        out.append(time.perf_counter() - started)
    return out


async def throughput(
    n: int, concurrency: int, docs: list[dict[str, Any]], call: Callable[..., Awaitable[Any]]
) -> float:
    queue = list(range(n))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            await call(docs[i % len(docs)])

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def p50_p99(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    return (
        ordered[len(ordered) // 2] * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    )


async def engine_table(n: int, bundle: LoadedBundle, binary: str | None) -> None:
    docs = inputs()
    table: list[tuple[str, float, float, float, float, float]] = []

    async def in_process(name: str, cls: Any) -> None:
        rates = []
        seconds: list[float] = []
        for threads in (1, 2):
            engine = cls(timeout=5, threads=threads)
            await engine.load(bundle)
            await atimed(50, docs, engine.evaluate)
            if threads == 1:
                seconds = await atimed(n, docs, engine.evaluate)
            rates.append(await throughput(n, 16, docs, engine.evaluate))
            await engine.aclose()

        async def one() -> Any:
            engine = cls(timeout=5, threads=1)
            await engine.load(bundle)
            return engine

        before = rss_bytes()
        engines = [await one() for _ in range(8)]
        for engine in engines:
            await engine.evaluate(docs[0])
        memory = (rss_bytes() - before) / 8 / 2**20
        for engine in engines:
            await engine.aclose()
        table.append((name, *p50_p99(seconds), rates[0], rates[1], memory))

    await in_process("wasm (OPA-compiled module)", WasmEngine)
    if binary is not None:
        proc, url = start_opa(binary)
        try:
            opa = OpaEngine(url, timeout=5)
            await opa.load(bundle)
            await atimed(50, docs, opa.evaluate)
            seconds = await atimed(n, docs, opa.evaluate)
            rates = [await throughput(n, c, docs, opa.evaluate) for c in (1, 2)]
            memory = rss_bytes(proc.pid) / 2**20
            await opa.aclose()
        finally:
            proc.kill()
            proc.wait()
        table.append(("OPA REST (one server)", *p50_p99(seconds), *rates, memory))
    print(f"engine table: shipped policy, {n} sequential evaluations per engine")
    header = f"{'engine':<28} {'p50 ms':>8} {'p99 ms':>8} {'eval/s 1t':>10} {'eval/s 2t':>10}"
    print(header + f" {'MiB/inst':>9}")
    for name, p50, p99, one_thread, two_threads, memory in table:
        print(
            f"{name:<28} {p50:8.3f} {p99:8.3f} {one_thread:10.0f} {two_threads:10.0f} {memory:9.1f}"
        )


def find_opa() -> str | None:
    explicit = os.environ.get("AGENTCTL_OPA_BIN")
    if explicit:
        return explicit
    tools = Path(os.environ.get("AGENTCTL_TOOLS_DIR") or Path.home() / ".cache/agentctl/tools")
    candidate = tools / "opa-v1.22.2" / "opa"
    return str(candidate) if candidate.exists() else None


def start_opa(binary: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            binary,
            "run",
            "--server",
            "--addr",
            f"127.0.0.1:{port}",
            "--log-level",
            "error",
            "--disable-telemetry",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(url + "/health", timeout=0.5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("OPA did not start")


async def run(n: int, concurrency: int) -> None:
    source = read_policy_dir(ROOT / "policies")
    wasm = (ROOT / "policies" / "policy.wasm").read_bytes()
    bundle = LoadedBundle(source.modules, source.data, revision="bench", wasm=wasm)
    docs = inputs()
    rows: list[str] = []
    wasm_engine = WasmEngine(timeout=5, threads=2)
    await wasm_engine.load(bundle)
    await atimed(50, docs, wasm_engine.evaluate)
    rows.append(summary("WasmEngine.evaluate", await atimed(n, docs, wasm_engine.evaluate)))
    rates = {"wasm": await throughput(n, concurrency, docs, wasm_engine.evaluate)}
    await wasm_engine.aclose()

    binary = find_opa()
    if binary is None:
        rows.append("OPA rows skipped: no OPA binary (scripts/install-opa.sh)")
    else:
        proc, url = start_opa(binary)
        try:
            opa = OpaEngine(url, timeout=5)
            await opa.load(bundle)
            async with httpx.AsyncClient(base_url=url) as client:

                async def bare(doc: dict[str, Any]) -> Any:
                    body = b'{"input":' + encode_input(doc).encode() + b"}"
                    response = await client.post(
                        "/v1/data/" + ENTRYPOINT,
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    return response.json()

                await atimed(50, docs, bare)
                rows.append(summary("bare POST to OPA /v1/data", await atimed(n, docs, bare)))
                rates["bare OPA"] = await throughput(n, concurrency, docs, bare)
            await atimed(50, docs, opa.evaluate)
            rows.append(summary("OpaEngine.evaluate", await atimed(n, docs, opa.evaluate)))
            rates["opa"] = await throughput(n, concurrency, docs, opa.evaluate)
            await opa.aclose()
        finally:
            proc.kill()
            proc.wait()
    print(f"shipped policy, {n} sequential decisions over {len(docs)} inputs")
    for row in rows:
        print(row)
    print(f"throughput with {concurrency} concurrent callers:")
    for name, rate in rates.items():
        print(f"  {name:<12} {rate:8.0f} decisions/s")
    if "opa" in rates:
        print(f"  wasm/opa ratio {rates['wasm'] / rates['opa']:.2f}")
    print()
    await engine_table(n, bundle, binary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(run(args.n, args.concurrency))


if __name__ == "__main__":
    main()

"""Federation figures: one decision at a stock OPA sidecar (``POST /v1/data``) next to a remote
``POST /v1/decisions`` at the control plane, and the time to build one domain's signed bundle
for 10,000 agents.

    .venv/bin/python -m bench.federation [--n 300] [--agents 10000]

Both decision paths run sequentially from one Python client with a kept-alive connection (the
latency one caller sees, not a throughput figure); the control plane serves TLS (OPA fetches
tokens over https only) on SQLite. ``ROWS`` is the table: other local paths (the SDK's local
``decide()``) add a row with ``add_row``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

BODY = {
    "action": "payments.refund",
    "resource": {"type": "order", "id": "o-1", "amount": 50, "region": "eu-west-1"},
    "context": {},
}

ROWS: list[tuple[str, dict[str, float]]] = []


def timed(call: Callable[[], object], n: int) -> dict[str, float]:
    for _ in range(min(20, n)):
        call()
    latencies = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    return {
        "n": n,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000,
        "per_s": n / sum(latencies),
    }


def add_row(name: str, figures: dict[str, float]) -> None:
    ROWS.append((name, figures))


def print_table() -> None:
    print(f"{'decision path':46} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'per s':>8}")
    for name, f in ROWS:
        print(
            f"{name:46} {f['n']:>6.0f} {f['p50_ms']:>8.3f} {f['p99_ms']:>8.3f} {f['per_s']:>8.0f}"
        )


def decision_paths(n: int) -> None:
    from tests.federation.harness import opa_config, start_opa, start_plane

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with start_plane(f"sqlite+aiosqlite:///{work / 'bench.db'}", work) as plane:
            plane.domain("payments")
            agent = plane.agent("payments", "refund-bot")
            point = plane.point("payments", "bench-opa")
            config = opa_config(
                plane, "payments", "bench-opa", point["credential"]["client_secret"], work
            )
            with start_opa(config, work) as opa, httpx.Client(timeout=30) as local:
                sidecar_input = {"input": {**BODY, "token": agent["token"]}}

                def at_sidecar() -> None:
                    r = local.post(opa.url + "/v1/data/agents/authz/decision", json=sidecar_input)
                    assert r.json()["result"]["effect"] == "allow"

                add_row("OPA sidecar POST /v1/data (localhost)", timed(at_sidecar, n))
                with httpx.Client(verify=plane.tls, timeout=30) as remote:
                    headers = {"Authorization": f"Bearer {agent['token']}"}

                    def at_centre() -> None:
                        r = remote.post(plane.url + "/v1/decisions", json=BODY, headers=headers)
                        assert r.json()["effect"] == "allow"

                    add_row("remote POST /v1/decisions (TLS, SQLite)", timed(at_centre, n))


def bundle_build(agents: int) -> dict[str, Any]:
    """Build (data + canonical JSON + tar.gz + ES256 signature) one domain's bundle."""
    from control_plane.crypto.signing import generate_signing_key
    from control_plane.federation.bundle import PolicyPart, RegistryPart, build
    from control_plane.federation.signing import BundleKey
    from control_plane.policy.bundles import read_policy_dir

    root = Path(__file__).parents[1]
    source = read_policy_dir(root / "policies")
    policy = PolicyPart(
        bundle="default",
        revision=1,
        digest="sha256:" + "0" * 64,
        modules=source.modules,
        data=source.data,
        wasm=(root / "policies" / "policy.wasm").read_bytes(),
    )
    signing = generate_signing_key("ES256")
    key = BundleKey(kid=signing.kid, public_jwk=signing.public_jwk(), private=signing)
    documents = {}
    for i in range(agents):
        agent_id = str(uuid.uuid4())
        documents[agent_id] = {
            "id": agent_id,
            "name": f"agent-{i}",
            "domain": "payments",
            "status": "active" if i % 10 else "suspended",
            "autonomy_level": i % 4,
            "labels": {"team": f"t{i % 50}"},
            "version": {"id": str(uuid.uuid4()), "version": "1.0.0", "state": "active"},
        }
    registry = RegistryPart(
        domain="payments",
        domain_info={"name": "payments", "description": ""},
        agents=documents,
        issuer="https://cp.example",
        audience="agent-control-plane",
        jwks={"keys": [generate_signing_key().public_jwk()]},
        max_staleness_seconds=300,
    )
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        built = build(policy, registry, key.sign)
        runs.append(time.perf_counter() - t0)
    return {
        "agents": agents,
        "median_ms": statistics.median(runs) * 1000,
        "archive_kib": len(built.archive) / 1024,
        "data_kib": len(built.files["data.json"]) / 1024,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--agents", type=int, default=10_000)
    args = parser.parse_args(argv)
    decision_paths(args.n)
    print_table()
    b = bundle_build(args.agents)
    print(
        f"\nbundle build for {b['agents']} agents (data, canonical JSON, tar.gz, ES256): "
        f"median {b['median_ms']:.0f} ms; data.json {b['data_kib']:.0f} KiB, "
        f"archive {b['archive_kib']:.0f} KiB"
    )


if __name__ == "__main__":
    main()

"""Issue 11's SDK figure: local-mode ``decide()`` beside an OPA sidecar's REST round trip and a
remote ``POST /v1/decisions``, for the same shipped policy and the same request, one call at a
time, interleaved call by call (the machine's load hits all three alike).

- SDK local: ``Client(mode="local").decide()`` over a bundle built and signed by the pinned OPA
  (``opa build -t wasm``), pulled and verified by the SDK; each call verifies the agent's token
  (cached after the first), evaluates the wasm module and writes the decision log to the
  durable outbox (a SQLite commit), as in production.
- OPA sidecar: ``POST /v1/data/agents/authz/decision`` on a local ``opa run --server`` holding
  the same policy and data (pooled ``httpx.Client``, keep-alive), input as the centre builds
  it (no token verification at OPA: the round trip and the evaluation only).
- remote: ``Client.decide()`` against a real ``agentctl serve`` (SQLite), which records each
  decision and its audit record.

Target (issue 11): local at least 3x faster than the sidecar round trip at the median.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from agent_sdk import Client, LocalOptions, VerificationKey
from bench.bench_engines import find_opa, start_opa
from bench.sdk import _credential
from bench.servers import server
from tests.sdk.localmode import (
    AGENT_CLIENT,
    AGENT_SECRET,
    DOMAIN,
    EP_CLIENT,
    EP_SECRET,
    ROOT,
    TokenKey,
    agent_doc,
    bundle_data,
    bundle_server,
    opa_build,
    rsa_pem,
)

CALLS = 1000
RESOURCE = {"type": "order", "id": "o-1", "amount": 40, "region": "eu-west-1"}


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99)] * 1000


def _sidecar_input() -> dict[str, Any]:
    return {
        "agent": agent_doc(),
        "action": "payments.refund",
        "resource": RESOURCE,
        "context": {},
        "vouched": {"time": "2026-06-01T12:00:00Z"},
    }


def main(calls: int = CALLS) -> None:
    binary = find_opa()
    if binary is None:
        print("  SDK local mode: skipped (no OPA binary: scripts/install-opa.sh)")
        return
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        private, public = rsa_pem()
        token_key = TokenKey()
        data = bundle_data(token_key)
        raw = opa_build(tmp, data, private)
        sidecar_data = dict(data)
        sidecar_data["federation"] = {**data["federation"], "edge": False}
        (tmp / "data.json").write_text(json.dumps(sidecar_data))
        with bundle_server(token_key) as bundles, server(tmp / "remote") as remote_url:
            bundles.publish(raw)
            local = Client(
                bundles.url,
                AGENT_CLIENT,
                AGENT_SECRET,
                outbox_path=tmp / "local-audit.sqlite3",
                mode="local",
                local=LocalOptions(
                    domain=DOMAIN,
                    client_id=EP_CLIENT,
                    client_secret=EP_SECRET,
                    bundle_keys=[VerificationKey("bundle-key", public)],
                    cache_dir=tmp / "local",
                    long_poll=30,
                ),
            )
            client_id, secret = _credential(remote_url)
            remote = Client(remote_url, client_id, secret, outbox_path=tmp / "remote.sqlite3")
            proc, opa_url = start_opa(binary)
            try:
                sidecar = httpx.Client(base_url=opa_url)
                policy = (ROOT / "policies" / "agents" / "authz.rego").read_text()
                sidecar.put("/v1/policies/authz", content=policy).raise_for_status()
                sidecar.put("/v1/data", content=(tmp / "data.json").read_bytes())
                body = {"input": _sidecar_input()}
                assert local.decide("payments.refund", RESOURCE).allow
                assert remote.decide("payments.refund", RESOURCE).allow
                answer = sidecar.post("/v1/data/agents/authz/decision", json=body).json()
                assert answer["result"]["allow"], answer
                local_t: list[float] = []
                sidecar_t: list[float] = []
                remote_t: list[float] = []
                for i in range(calls):
                    t0 = time.perf_counter()
                    local.decide("payments.refund", RESOURCE)
                    local_t.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    sidecar.post("/v1/data/agents/authz/decision", json=body).json()
                    sidecar_t.append(time.perf_counter() - t0)
                    if i % 4 == 0:  # the remote call is slow; a quarter of the samples suffice
                        t0 = time.perf_counter()
                        remote.decide("payments.refund", RESOURCE)
                        remote_t.append(time.perf_counter() - t0)
                assert local.flush(120)
                delivered = len(bundles.logs)
            finally:
                proc.kill()
                proc.wait()
                local.close(timeout=0)
                remote.close(timeout=0)
    (lm, lp), (om, op), (rm, rp) = _stats(local_t), _stats(sidecar_t), _stats(remote_t)
    print(f"  decide(), one call at a time, interleaved ({calls} local and sidecar calls)")
    print(f"    SDK local decide()                      p50 {lm:7.3f} ms   p99 {lp:7.3f} ms")
    print(f"    OPA sidecar POST /v1/data round trip    p50 {om:7.3f} ms   p99 {op:7.3f} ms")
    print(f"    remote POST /v1/decisions (SDK)         p50 {rm:7.3f} ms   p99 {rp:7.3f} ms")
    print(
        f"    sidecar / local at p50: {om / lm:5.1f}x (target >= 3x); "
        f"remote / local: {rm / lm:5.1f}x; decision logs delivered: {delivered}"
    )


if __name__ == "__main__":
    main()

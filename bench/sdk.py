"""Issue 10's figures: what the SDK adds on top of a raw httpx call, and the audit outbox rate.

1. ``decide()`` against a real server, interleaved call by call with a raw ``httpx.Client``
   POST of the same body with the same token: median and p99 of each and of the difference.
2. The SDK's own cost without the network: ``decide()`` over ``httpx.MockTransport`` next to a
   raw ``httpx.Client.post`` over the same transport (target: at most 0.2 ms at the median).
3. The outbox: ``audit()`` records/s into the SQLite outbox (server stopped), and records/s
   delivered by the flusher to ``POST /v1/audit/records`` (when the server has it).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from agent_sdk import Client
from bench.servers import ADMIN, server

CALLS = 400
RECORDS = 5000
RESOURCE = {"type": "order", "id": "o-1", "amount": 40, "region": "eu-west-1"}
DECISION = {
    "decision_id": str(uuid.uuid4()),
    "effect": "allow",
    "allow": True,
    "reasons": [],
    "obligations": [],
    "bundle": "default",
    "revision": 1,
    "engine": "wasm",
}


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99)] * 1000


def _credential(url: str) -> tuple[str, str]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        c.post("/v1/domains", json={"name": "payments"})
        agent = c.post(
            "/v1/agents",
            json={
                "name": "refund-bot",
                "domain": "payments",
                "owner": "bench",
                "autonomy_level": 1,
            },
        ).json()
        if "id" not in agent:
            listed = c.get("/v1/agents", params={"domain": "payments"}).json()["data"]
            agent = next(a for a in listed if a["name"] == "refund-bot")
        version = c.post(
            f"/v1/agents/{agent['id']}/versions",
            json={
                "version": f"1.0.{time.time_ns()}",
                "model_name": "m",
                "model_version": "1",
                "artifact_digest": "sha256:" + "0" * 64,
            },
        ).json()
        for step in ("approve", "activate"):
            c.post(f"/v1/agents/{agent['id']}/versions/{version['id']}/{step}")
        cred = c.post(
            f"/v1/agents/{agent['id']}/credentials",
            json={"scopes": ["decisions:create", "audit:write"]},
        ).json()
    return cred["client_id"], cred["client_secret"]


def _over_the_network(url: str, tmp: Path) -> None:
    client_id, secret = _credential(url)
    sdk = Client(url, client_id, secret, outbox_path=tmp / "decide-outbox.db")
    sdk.decide("payments.refund", RESOURCE)  # token, connection
    token = sdk._tokens.current()
    raw = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
    body = {"action": "payments.refund", "resource": RESOURCE}
    raw_t: list[float] = []
    sdk_t: list[float] = []
    for _ in range(CALLS):
        t0 = time.perf_counter()
        r = raw.post("/v1/decisions", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        r.raise_for_status()
        r.json()
        raw_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sdk.decide("payments.refund", RESOURCE)
        sdk_t.append(time.perf_counter() - t0)
    raw.close()
    sdk.close(timeout=0)
    (rm, rp), (sm, sp) = _stats(raw_t), _stats(sdk_t)
    diff = [s - r for s, r in zip(sdk_t, raw_t, strict=True)]
    print(f"  decide() over HTTP, {CALLS} calls interleaved, one at a time")
    print(f"    raw httpx POST /v1/decisions   p50 {rm:7.3f} ms   p99 {rp:7.3f} ms")
    print(f"    Client.decide()                p50 {sm:7.3f} ms   p99 {sp:7.3f} ms")
    print(f"    overhead (paired difference)   p50 {statistics.median(diff) * 1000:7.3f} ms")


def _in_process(tmp: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 600})
        return httpx.Response(200, json=DECISION)

    transport = httpx.MockTransport(handler)
    sdk = Client(
        "http://cp.test",
        "c",
        "s",
        outbox_path=tmp / "mock-outbox.db",
        http_client=httpx.Client(transport=transport),
    )
    raw = httpx.Client(transport=transport, base_url="http://cp.test")
    body = {"action": "payments.refund", "resource": RESOURCE}
    raw_t: list[float] = []
    sdk_t: list[float] = []
    sdk.decide("payments.refund", RESOURCE)
    for _ in range(CALLS * 5):
        t0 = time.perf_counter()
        raw.post(
            "/v1/decisions",
            json=body,
            headers={"Authorization": "Bearer t", "Idempotency-Key": str(uuid.uuid4())},
        ).json()
        raw_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sdk.decide("payments.refund", RESOURCE)
        sdk_t.append(time.perf_counter() - t0)
    sdk.close(timeout=0)
    (rm, rp), (sm, sp) = _stats(raw_t), _stats(sdk_t)
    print(f"  decide() without the network (httpx.MockTransport), {CALLS * 5} calls")
    print(f"    raw httpx.Client.post          p50 {rm:7.3f} ms   p99 {rp:7.3f} ms")
    print(f"    Client.decide()                p50 {sm:7.3f} ms   p99 {sp:7.3f} ms")
    diff = sorted(s - r for s, r in zip(sdk_t, raw_t, strict=True))
    dm, dp = statistics.median(diff) * 1000, diff[int(len(diff) * 0.99)] * 1000
    print(
        f"    SDK overhead (paired)          p50 {dm:7.3f} ms   p99 {dp:7.3f} ms"
        "   (target: p50 <= 0.2 ms)"
    )


def _records(n: int) -> list[dict[str, Any]]:
    return [
        {
            "action": "payments.refund",
            "resource": {"type": "order", "id": f"o-{i}"},
            "inputs": {"amount": i % 100},
            "outputs": {"refund_id": f"r-{i}"},
            "status": "succeeded",
        }
        for i in range(n)
    ]


def _outbox(tmp: Path) -> None:
    with server(tmp / "outbox-server") as url:
        client_id, secret = _credential(url)
        has_audit = "/v1/audit/records" in httpx.get(f"{url}/openapi.json").json()["paths"]
    records = _records(RECORDS)
    # The server is stopped: audit() only writes the outbox.
    sdk = Client(
        "http://127.0.0.1:9", client_id, secret, outbox_path=tmp / "outbox.db", breaker_cooldown=60
    )
    t0 = time.perf_counter()
    for record in records:
        sdk.audit(record)
    recorded = RECORDS / (time.perf_counter() - t0)
    sdk.close(timeout=0)
    print(f"  outbox: audit() one record at a time      {recorded:9.0f} records/s recorded")
    if not has_audit:
        print("  outbox: delivery                          n/a (no POST /v1/audit/records)")
        return
    with server(tmp / "outbox-server") as url:
        t0 = time.perf_counter()
        with Client(
            url,
            client_id,
            secret,
            outbox_path=tmp / "outbox.db",
            audit_batch_size=1000,
            flush_interval=0.05,
        ) as sdk:
            assert sdk.flush(timeout=300)
        delivered = RECORDS / (time.perf_counter() - t0)
    print(f"  outbox: flusher to POST /v1/audit/records {delivered:9.0f} records/s delivered")


def main() -> None:
    print(f"agent_sdk (issue 10): decide() overhead, outbox throughput ({RECORDS} records)")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        _in_process(tmp)
        with server(tmp / "decide-server") as url:
            _over_the_network(url, tmp)
        _outbox(tmp)


if __name__ == "__main__":
    main()

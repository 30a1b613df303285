"""Issue 4's figures: decision latency (p50, p99) and throughput, side by side in one run:

1. POST /v1/decisions on a real server with the wasm engine (the default);
2. POST /v1/decisions on a real server with the opa engine (a real OPA server);
3. a bare POST to that OPA's /v1/data/agents/authz/decision, same policy, same inputs.

The ratios say what the control plane adds on top of bare policy evaluation: authentication,
the registry lookups, the decision record written in the same transaction.

Issue 13's figure, in the same run: the wasm path with budgets off and on, side by side. One
server, the same agent and inputs; rounds alternate between no budget and budgets on the agent
and its domain (limits never reached, so every allow checks and consumes six windows), and each
side reports the median of its rounds (off-on, on-off, ...), so load drifting on a shared
machine hits both alike.
Inputs above the approval threshold create approvals either way.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.servers import ADMIN, measure, row, server
from tests.fixtures.servers import free_port

SECONDS = 3.0
CONCURRENCY = 4
ROUNDS = 8  # budgets off and on: this many rounds of SECONDS each, alternating
# Limits far above what a run uses: every window is checked and consumed, none refuses.
LIMITS: dict[str, int | None] = {
    "actions_per_minute": 10**9,
    "actions_per_hour": 10**9,
    "spend_per_day": 10**12,
}
NO_LIMITS: dict[str, int | None] = dict.fromkeys(LIMITS)
ROOT = Path(__file__).resolve().parents[1]


def _opa_bin() -> str:
    if os.environ.get("AGENTCTL_OPA_BIN"):
        return os.environ["AGENTCTL_OPA_BIN"]
    done = subprocess.run(
        [str(ROOT / "scripts" / "install-opa.sh")], capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def _inputs(n: int = 64) -> list[dict[str, Any]]:
    rng = random.Random(7)
    out = []
    for _ in range(n):
        out.append(
            {
                "action": rng.choice(
                    ["payments.refund", "payments.refund.read", "payments.payout"]
                ),
                "resource": {
                    "type": "order",
                    "id": f"o-{rng.randrange(10**6)}",
                    "amount": rng.choice([5, 50, 99, 150, 900]),
                    "region": rng.choice(["eu-west-1", "us-east-1", "ap-south-1"]),
                    "classification": rng.choice(["internal", "confidential"]),
                },
                "context": {"risk": rng.choice(["low", "medium"])},
            }
        )
    return out


async def _agent_token(
    url: str, transport: httpx.AsyncBaseTransport | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    """Register an agent with an active version and a credential; its bearer header and document.

    ``transport`` (an in-process ASGI transport, say) replaces the network when given.
    """
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=url, headers=admin, transport=transport) as c:
        await c.post("/v1/domains", json={"name": "payments"})
        r = await c.post(
            "/v1/agents",
            json={
                "name": "refund-bot",
                "domain": "payments",
                "owner": "bench",
                "autonomy_level": 1,
            },
        )
        if r.status_code == 409:  # a shared benchmark database: reuse the agent
            listed = (await c.get("/v1/agents", params={"domain": "payments"})).json()["data"]
            agent = next(a for a in listed if a["name"] == "refund-bot")
        else:
            agent = r.json()
        version = (
            await c.post(
                f"/v1/agents/{agent['id']}/versions",
                json={
                    "version": f"1.0.{time.time_ns()}",
                    "model_name": "m",
                    "model_version": "1",
                    "artifact_digest": "sha256:" + "0" * 64,
                },
            )
        ).json()
        for step in ("approve", "activate"):
            await c.post(f"/v1/agents/{agent['id']}/versions/{version['id']}/{step}")
        cred = (
            await c.post(
                f"/v1/agents/{agent['id']}/credentials", json={"scopes": ["decisions:create"]}
            )
        ).json()
        basic = base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}".encode())
        r = await c.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic.decode()}"},
        )
    agent_doc = {
        "id": agent["id"],
        "name": agent["name"],
        "domain": "payments",
        "status": "active",
        "autonomy_level": 1,
        "labels": {},
        "version": {"id": version["id"], "version": version["version"], "state": "active"},
    }
    return {"Authorization": f"Bearer {r.json()['access_token']}"}, agent_doc


async def _control_plane(url: str) -> tuple[dict[str, float], dict[str, Any]]:
    headers, agent_doc = await _agent_token(url)
    bodies = itertools.cycle(_inputs())
    async with httpx.AsyncClient(base_url=url, headers=headers) as c:

        async def call() -> None:
            r = await c.post("/v1/decisions", json=next(bodies))
            assert r.status_code == 200, r.text
            assert not r.json()["reasons"] or not r.json()["reasons"][0].startswith("engine")

        await measure(call, seconds=0.5, concurrency=CONCURRENCY)
        return await measure(call, seconds=SECONDS, concurrency=CONCURRENCY), agent_doc


def _median(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The median round of each figure (n: all rounds' decisions)."""
    figures = {k: statistics.median(r[k] for r in rounds) for k in ("rps", "p50_ms", "p99_ms")}
    return {**figures, "n": sum(r["n"] for r in rounds)}


async def _budgets_off_on(url: str) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """The wasm path without and with budgets, in alternating rounds on one server."""
    headers, agent_doc = await _agent_token(url)
    bodies = itertools.cycle(_inputs())
    budgets = (f"/v1/agents/{agent_doc['id']}/budget", "/v1/domains/payments/budget")
    admin = {"Authorization": f"Bearer {ADMIN}"}
    off: list[dict[str, float]] = []
    on: list[dict[str, float]] = []
    async with (
        httpx.AsyncClient(base_url=url, headers=headers) as c,
        httpx.AsyncClient(base_url=url, headers=admin) as operator,
    ):

        async def call() -> None:
            r = await c.post("/v1/decisions", json=next(bodies))
            assert r.status_code == 200, r.text
            assert r.json()["reasons"] != ["budget_exceeded"], r.text
            assert not r.json()["reasons"] or not r.json()["reasons"][0].startswith("engine")

        async def limits(body: dict[str, int | None]) -> None:
            for path in budgets:
                r = await operator.put(path, json=body)
                assert r.status_code == 200, r.text

        try:
            await measure(call, seconds=0.5, concurrency=CONCURRENCY)
            for i in range(ROUNDS):
                # ABBA: off-on, then on-off, so a steady drift weighs on both sides alike.
                order = ((off, NO_LIMITS), (on, LIMITS))
                for side, body in order if i % 2 == 0 else order[::-1]:
                    await limits(body)
                    await measure(call, seconds=0.2, concurrency=CONCURRENCY)
                    side.append(await measure(call, seconds=SECONDS, concurrency=CONCURRENCY))
        finally:
            await limits(NO_LIMITS)  # a shared benchmark database is left as it was
    return _median(off), _median(on), agent_doc


async def _bare_opa(opa_url: str, agent_doc: dict[str, Any]) -> dict[str, float]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    docs = [
        {"input": {**i, "agent": agent_doc, "context": {**i["context"], "time": now}}}
        for i in _inputs()
    ]
    bodies = itertools.cycle(docs)
    async with httpx.AsyncClient(base_url=opa_url) as c:

        async def call() -> None:
            r = await c.post("/v1/data/agents/authz/decision", json=next(bodies))
            assert r.status_code == 200, r.text
            assert "result" in r.json(), r.text

        await measure(call, seconds=0.5, concurrency=CONCURRENCY)
        return await measure(call, seconds=SECONDS, concurrency=CONCURRENCY)


def _budget_line(off: dict[str, float], on: dict[str, float]) -> str:
    """Issue 13's bound: budgets on the path cost at most 10% of throughput and of p50."""
    rps, p50 = on["rps"] / off["rps"], on["p50_ms"] / off["p50_ms"]
    verdict = "within" if rps >= 0.9 and p50 <= 1.1 else "NOT within"
    return (
        f"  budgets on vs off (wasm engine, median of {ROUNDS} alternating rounds each): "
        f"throughput x{rps:.2f}, p50 x{p50:.2f}, p99 x{on['p99_ms'] / off['p99_ms']:.2f}: "
        f"{verdict} issue 13's 10% bound (throughput, p50)"
    )


def main() -> None:
    print(
        f"decisions (issues 4 and 13): {CONCURRENCY} concurrent clients, {SECONDS:.0f} s per path"
        f" ({ROUNDS} rounds each for budgets off and on)"
    )
    opa_bin = _opa_bin()
    port = free_port()
    opa = subprocess.Popen(
        [
            opa_bin,
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
    opa_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{opa_url}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as tmp:
            with server(Path(tmp) / "wasm") as url:
                wasm, budgeted, _ = asyncio.run(_budgets_off_on(url))
            with server(
                Path(tmp) / "opa", AGENTCTL_POLICY_ENGINE="opa", AGENTCTL_OPA_URL=opa_url
            ) as url:
                via_opa, agent_doc = asyncio.run(_control_plane(url))
        bare = asyncio.run(_bare_opa(opa_url, agent_doc))
    finally:
        opa.terminate()
        opa.wait(timeout=10)
    print(row("POST /v1/decisions, wasm engine", wasm))
    print(row("POST /v1/decisions, wasm engine, budgets on", budgeted))
    print(row("POST /v1/decisions, opa engine", via_opa))
    print(row("bare OPA POST /v1/data (same policy, inputs)", bare))
    for name, m in (("wasm engine", wasm), ("opa engine", via_opa)):
        print(
            f"  {name:<11} vs bare OPA: p50 x{m['p50_ms'] / bare['p50_ms']:.2f}, "
            f"p99 x{m['p99_ms'] / bare['p99_ms']:.2f}, throughput x{m['rps'] / bare['rps']:.2f}"
        )
    print(_budget_line(wasm, budgeted))


if __name__ == "__main__":
    main()

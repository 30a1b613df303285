"""POST /v1/decisions with the `opa` engine: a real OPA process, and every way it can fail.

A loopback proxy in front of the real OPA injects the faults (500, too slow, truncated JSON);
killing OPA and loading policies whose decision is undefined or malformed cover the rest. Every
failure is a deny with a reason, is stored like any other decision, and answers in bounded time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.app import create_app
from control_plane.config import Settings
from tests.conftest import _bootstrap
from tests.fixtures.decisions import REFUND, decider
from tests.policy.helpers import OpaServer, running_opa
from tests.policy.proxy import Fault, FaultProxy

TIMEOUT = 0.5


@dataclass
class Rig:
    client: httpx.AsyncClient
    me: dict[str, Any]
    proxy: FaultProxy
    opa: OpaServer


@pytest.fixture
async def rig(
    settings: Settings, opa_bin: str, tmp_path: Path, admin: dict[str, str]
) -> AsyncIterator[Rig]:
    with running_opa(opa_bin, tmp_path / "opa.log") as opa:
        proxy = await FaultProxy(opa.url).start()
        try:
            configured = settings.model_copy(
                update={
                    "policy_engine": "opa",
                    "opa_url": proxy.url,
                    "policy_timeout_seconds": TIMEOUT,
                }
            )
            await _bootstrap(configured)
            app = create_app(configured)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://testserver"
                ) as c:
                    me = await decider(c, admin)
                    yield Rig(c, me, proxy, opa)
        finally:
            await proxy.close()


async def _decide(rig: Rig) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    r = await rig.client.post("/v1/decisions", json=REFUND, headers=rig.me["headers"])
    assert r.status_code == 200, r.text
    return r.json(), time.monotonic() - started


async def test_real_opa_decides(rig: Rig, admin: dict[str, str]) -> None:
    body, _ = await _decide(rig)
    assert (body["effect"], body["engine"], body["revision"]) == ("allow", "opa", 1)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(kind="status", status=500), "engine_error"),
        (Fault(kind="status", status=200, body=b"{}"), "undefined_decision"),
        (
            Fault(kind="status", status=200, body=b'{"result": {"allow": "yes"}}'),
            "malformed_decision",
        ),
        (Fault(kind="delay", seconds=3.0), "engine_timeout"),
        (Fault(kind="truncate", keep=25), "engine_error"),
        (Fault(kind="cut", keep=25), "engine_error"),
    ],
    ids=["http_500", "empty_object", "non_boolean_allow", "slow", "truncated", "cut"],
)
async def test_faults_fail_closed_and_are_stored(
    rig: Rig, admin: dict[str, str], fault: Fault, reason: str
) -> None:
    await _decide(rig)  # loads the bundle into OPA through the proxy
    rig.proxy.fault = fault
    body, elapsed = await _decide(rig)
    assert (body["effect"], body["allow"]) == ("deny", False)
    assert body["reasons"][0].startswith(reason), body
    assert elapsed < TIMEOUT + 2.0  # bounded, whatever OPA does
    stored = (await rig.client.get("/v1/decisions", headers=admin)).json()["data"][-1]
    assert stored["id"] == body["decision_id"]
    assert stored["failure"] == reason
    assert stored["effect"] == "deny"
    # No obligations to go by: the record keeps only the resource's type and id.
    assert stored["resource"] == {"type": "order", "id": "o-1"}


async def test_opa_killed(rig: Rig, admin: dict[str, str]) -> None:
    assert (await _decide(rig))[0]["effect"] == "allow"
    rig.opa.kill()
    body, elapsed = await _decide(rig)
    assert (body["effect"], body["allow"]) == ("deny", False)
    assert body["reasons"][0].startswith("engine_error")
    assert elapsed < TIMEOUT + 2.0
    effects = [
        d["effect"] for d in (await rig.client.get("/v1/decisions", headers=admin)).json()["data"]
    ]
    assert effects == ["allow", "deny"]


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        ("package agents.authz\n\nsomething_else := true\n", "undefined_decision"),
        (
            'package agents.authz\n\ndecision := {"effect": "allow", "allow": "true", '
            '"reasons": [], "obligations": []}\n',
            "malformed_decision",
        ),
        (
            'package agents.authz\n\ndecision := {"effect": "allow", "allow": false, '
            '"reasons": [], "obligations": []}\n',
            "malformed_decision",
        ),
        ('package agents.authz\n\ndecision := {"effect": "allow"}\n', "malformed_decision"),
    ],
    ids=["undefined", "string_allow", "allow_contradicts_effect", "missing_keys"],
)
async def test_wrong_shaped_policies_deny(
    rig: Rig, admin: dict[str, str], module: str, reason: str
) -> None:
    r = await rig.client.post(
        "/v1/policies/default/revisions",
        json={"modules": {"agents/authz.rego": module}, "data": {}},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    await rig.client.post("/v1/policies/default/revisions/2/activate", headers=admin)
    body, _ = await _decide(rig)
    assert (body["effect"], body["allow"], body["revision"]) == ("deny", False, 2)
    assert body["reasons"][0].startswith(reason), body


async def test_decisions_stay_bounded_while_a_load_hangs(
    settings: Settings, admin: dict[str, str]
) -> None:
    """OPA that accepts connections and never answers: loading the policy hangs, yet every
    decision (three at once) answers within the load wait with a stored deny."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)

    hanging = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = hanging.sockets[0].getsockname()[1]
    try:
        configured = settings.model_copy(
            update={
                "policy_engine": "opa",
                "opa_url": f"http://127.0.0.1:{port}",
                "policy_timeout_seconds": TIMEOUT,
                "policy_load_wait_seconds": 0.5,
                # Start-up waits for the load until it fails: 2 s rather than the default 30.
                "opa_load_timeout_seconds": 2.0,
            }
        )
        await _bootstrap(configured)
        app = create_app(configured)
        starting = time.monotonic()
        async with app.router.lifespan_context(app):
            # Start-up gave up on the hung load after AGENTCTL_OPA_LOAD_TIMEOUT_SECONDS (2 s),
            # far sooner than the default 30 s.
            assert time.monotonic() - starting < 15
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                me = await decider(c, admin)
                rig = Rig(c, me, None, None)  # type: ignore[arg-type]
                results = await asyncio.gather(*(_decide(rig) for _ in range(3)))
                for body, elapsed in results:
                    assert (body["effect"], body["allow"]) == ("deny", False)
                    assert body["reasons"][0].startswith("engine_not_loaded"), body
                    assert elapsed < 3.0, elapsed
                stored = (await c.get("/v1/decisions", headers=admin)).json()["data"]
                assert [d["failure"] for d in stored] == ["engine_not_loaded"] * 3
    finally:
        hanging.close()

"""The OPA engine against a real `opa run --server`: decisions, loading, and failing closed.

Faults come from the real process (killed, runtime errors, undefined or malformed documents)
or from a loopback proxy in front of it (slow, 500, truncated answers). Every one must give a
deny with a reason, within the engine timeout, and never an exception.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from control_plane.policy.engines.base import EngineResult, LoadedBundle, PolicyLoadError
from control_plane.policy.engines.opa import OpaEngine
from tests.policy.helpers import OpaServer, allowed_input, decision_module, one_module
from tests.policy.proxy import Fault, FaultProxy

pytestmark = pytest.mark.opa

TIMEOUT = 0.5
ALLOW = 'decision := {"effect": "allow", "allow": true, "reasons": [], "obligations": []}'


def assert_denied(result: EngineResult, failure: str, started: float) -> None:
    assert result.effect == "deny"
    assert result.allow is False
    assert result.failure == failure
    assert result.reasons
    assert result.reasons[0].startswith(failure)
    assert time.perf_counter() - started < TIMEOUT + 1.0


@pytest.fixture
async def proxied(
    start_opa: Callable[[], OpaServer],
) -> AsyncIterator[tuple[OpaEngine, FaultProxy]]:
    """An engine talking to a fresh OPA through the fault proxy, loaded with an allow-all."""
    server = start_opa()
    proxy = await FaultProxy(server.url).start()
    engine = OpaEngine(proxy.url, timeout=TIMEOUT)
    await engine.load(one_module(decision_module(ALLOW)))
    assert (await engine.evaluate({})).allow  # the path works before the fault
    yield engine, proxy
    await engine.aclose()
    await proxy.close()


async def test_shipped_policy(opa_server: OpaServer, shipped_bundle: LoadedBundle) -> None:
    engine = OpaEngine(opa_server.url, timeout=5)
    try:
        await engine.load(shipped_bundle)
        assert await engine.health()
        result = await engine.evaluate(allowed_input())
        assert (result.effect, result.allow, result.failure) == ("allow", True, None)
        assert (result.engine, result.revision) == ("opa", "shipped")
        doc = allowed_input()
        doc["agent"]["autonomy_level"] = 1
        doc["resource"]["amount"] = 500
        result = await engine.evaluate(doc)
        assert (result.effect, result.reasons) == (
            "require_approval",
            ("amount_requires_approval",),
        )
    finally:
        await engine.aclose()


async def test_opa_killed(start_opa: Callable[[], OpaServer]) -> None:
    server = start_opa()
    engine = OpaEngine(server.url, timeout=TIMEOUT)
    try:
        await engine.load(one_module(decision_module(ALLOW)))
        assert (await engine.evaluate({})).allow
        server.kill()
        started = time.perf_counter()
        result = await engine.evaluate({})
        assert_denied(result, "engine_error", started)
        assert "OPA unreachable" in result.reasons[0]
        assert not await engine.health()
    finally:
        await engine.aclose()


async def test_opa_slower_than_timeout(proxied: tuple[OpaEngine, FaultProxy]) -> None:
    engine, proxy = proxied
    proxy.fault = Fault("delay", seconds=3.0)
    started = time.perf_counter()
    results = await asyncio.gather(*(engine.evaluate({}) for _ in range(5)))
    for result in results:
        assert_denied(result, "engine_timeout", started)


async def test_slow_policy_in_opa_times_out(start_opa: Callable[[], OpaServer]) -> None:
    server = start_opa()
    engine = OpaEngine(server.url, timeout=TIMEOUT)
    slow = (
        "n := count([x | some x in numbers.range(1, 3000); some y in numbers.range(1, 3000);"
        " x == y])\n" + ALLOW + " if n > 0"
    )
    try:
        await engine.load(one_module(decision_module(slow)))
        started = time.perf_counter()
        assert_denied(await engine.evaluate({}), "engine_timeout", started)
    finally:
        await engine.aclose()


async def test_opa_answering_500_from_proxy(proxied: tuple[OpaEngine, FaultProxy]) -> None:
    engine, proxy = proxied
    proxy.fault = Fault("status", status=500)
    started = time.perf_counter()
    result = await engine.evaluate({})
    assert_denied(result, "engine_error", started)
    assert "OPA HTTP 500" in result.reasons[0]


async def test_opa_runtime_error_is_a_500(start_opa: Callable[[], OpaServer]) -> None:
    """A real OPA 500: two complete definitions of the decision conflict at evaluation."""
    server = start_opa()
    engine = OpaEngine(server.url, timeout=TIMEOUT)
    conflict = (
        ALLOW
        + " if input.a\n"
        + (
            'decision := {"effect": "deny", "allow": false, "reasons": ["x"], "obligations": []}'
            " if input.a"
        )
    )
    try:
        await engine.load(one_module(decision_module(conflict)))
        started = time.perf_counter()
        result = await engine.evaluate({"a": True})
        assert_denied(result, "engine_error", started)
        assert "OPA HTTP 500" in result.reasons[0]
        assert "eval_conflict_error" in result.reasons[0]
    finally:
        await engine.aclose()


async def test_client_errors_are_not_retried(proxied: tuple[OpaEngine, FaultProxy]) -> None:
    engine, proxy = proxied
    proxy.fault = Fault("status", status=400, body=b'{"code":"invalid_parameter","message":"x"}')
    started = time.perf_counter()
    result = await engine.evaluate({})
    assert_denied(result, "engine_error", started)
    assert "OPA HTTP 400" in result.reasons[0]
    assert proxy.decision_requests == 1


@pytest.mark.parametrize(
    ("body", "failure", "detail"),
    [
        ("p := 1", "undefined_decision", ""),  # OPA answers {} without result
        (
            'decision := {"effect": "allow", "allow": "true", "reasons": [], "obligations": []}',
            "malformed_decision",
            "allow is a string",
        ),
        (
            'decision := {"effect": "allow", "allow": 1, "reasons": [], "obligations": []}',
            "malformed_decision",
            "allow is a number",
        ),
        ('decision := {"effect": "allow", "reasons": []}', "malformed_decision", "missing"),
        ("decision := [1]", "malformed_decision", "an array"),
    ],
)
async def test_wrong_documents_from_real_opa(
    start_opa: Callable[[], OpaServer], body: str, failure: str, detail: str
) -> None:
    server = start_opa()
    engine = OpaEngine(server.url, timeout=TIMEOUT)
    try:
        await engine.load(one_module(decision_module(body)))
        started = time.perf_counter()
        result = await engine.evaluate(allowed_input())
        assert_denied(result, failure, started)
        assert detail in result.reasons[0]
    finally:
        await engine.aclose()


@pytest.mark.parametrize("keep", [0, 1, 20, 40])
async def test_truncated_json(proxied: tuple[OpaEngine, FaultProxy], keep: int) -> None:
    engine, proxy = proxied
    proxy.fault = Fault("truncate", keep=keep)
    started = time.perf_counter()
    result = await engine.evaluate({})
    assert_denied(result, "engine_error", started)
    assert "invalid JSON" in result.reasons[0]


async def test_connection_cut_mid_body(proxied: tuple[OpaEngine, FaultProxy]) -> None:
    engine, proxy = proxied
    proxy.fault = Fault("cut", keep=30)
    started = time.perf_counter()
    assert_denied(await engine.evaluate({}), "engine_error", started)


async def test_load_replaces_modules_and_data(start_opa: Callable[[], OpaServer]) -> None:
    server = start_opa()
    engine = OpaEngine(server.url, timeout=5)
    first = LoadedBundle(
        modules={
            "agents/authz.rego": decision_module(
                "import data.lib\n\n"
                'decision := {"effect": data.cfg.effect, "allow": data.cfg.effect == "allow",'
                ' "reasons": [lib.reason(1)], "obligations": []}'
            ),
            # Sorted after agents/: OPA must get it before the module that calls it.
            "lib/reasons.rego": 'package lib\n\nreason(n) := sprintf("r%d", [n])\n',
            "lib/old.rego": "package old\n\nx := 1\n",
            "agents/authz_test.rego": "package agents.authz_test\n\ntest_x if true\n",
        },
        data={"cfg": {"effect": "deny"}},
        revision="r1",
    )
    second = LoadedBundle(
        modules={"agents/authz.rego": decision_module(ALLOW)},
        data={"other": {}},
        revision="r2",
    )
    try:
        await engine.load(first)
        result = await engine.evaluate({})
        assert (result.effect, result.reasons, result.revision) == ("deny", ("r1",), "r1")
        async with httpx.AsyncClient(base_url=server.url) as client:
            ids = {p["id"] for p in (await client.get("/v1/policies")).json()["result"]}
            assert ids == {
                "agentctl/agents/authz.rego",
                "agentctl/lib/reasons.rego",
                "agentctl/lib/old.rego",
                "agentctl/.revision",  # the marker that tells a restarted (empty) OPA apart
            }  # test modules are not loaded
            await engine.load(second)
            ids = {p["id"] for p in (await client.get("/v1/policies")).json()["result"]}
            assert ids == {"agentctl/agents/authz.rego", "agentctl/.revision"}
            assert (await client.get("/v1/data/cfg")).json() == {}
        result = await engine.evaluate({})
        assert (result.effect, result.revision) == ("allow", "r2")
        await engine.load(first)  # rollback
        assert (await engine.evaluate({})).revision == "r1"
    finally:
        await engine.aclose()


async def test_failed_load_denies_until_a_good_load(start_opa: Callable[[], OpaServer]) -> None:
    server = start_opa()
    engine = OpaEngine(server.url, timeout=5)
    try:
        await engine.load(one_module(decision_module(ALLOW), revision="good"))
        with pytest.raises(PolicyLoadError, match="undefined function"):
            await engine.load(one_module(decision_module("decision := nope.fn(1)"), revision="x"))
        result = await engine.evaluate({})
        assert (result.effect, result.failure) == ("deny", "engine_not_loaded")
        assert engine.revision is None
        await engine.load(one_module(decision_module(ALLOW), revision="good"))
        assert (await engine.evaluate({})).allow
    finally:
        await engine.aclose()


async def test_decisions_wait_for_a_load_in_progress(start_opa: Callable[[], OpaServer]) -> None:
    server = start_opa()
    engine = OpaEngine(server.url, timeout=5)
    deny = decision_module(
        'decision := {"effect": "deny", "allow": false, "reasons": ["v2"], "obligations": []}'
    )
    try:
        await engine.load(one_module(decision_module(ALLOW), revision="v1"))

        async def stream() -> list[EngineResult]:
            return [await engine.evaluate({}) for _ in range(40)]

        task = asyncio.gather(stream(), stream())
        await asyncio.sleep(0.01)
        await engine.load(one_module(deny, revision="v2"))
        results = [r for batch in await task for r in batch]
        for r in results:
            assert r.failure is None
            assert (r.revision, r.effect) in {("v1", "allow"), ("v2", "deny")}
    finally:
        await engine.aclose()


async def test_not_loaded_and_closed(start_opa: Callable[[], OpaServer]) -> None:
    server = start_opa()
    engine = OpaEngine(server.url, timeout=TIMEOUT)
    started = time.perf_counter()
    assert_denied(await engine.evaluate({}), "engine_not_loaded", started)
    await engine.aclose()
    assert_denied(await engine.evaluate({}), "engine_not_loaded", started)

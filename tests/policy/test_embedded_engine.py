"""The embedded (regopy) engine on the shipped policy and on broken bundles."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from control_plane.policy.engines import embedded
from control_plane.policy.engines.base import LoadedBundle, PolicyLoadError
from control_plane.policy.engines.embedded import EmbeddedEngine
from tests.policy.helpers import allowed_input, decision_module, one_module


@pytest.fixture
async def engine(shipped_bundle: LoadedBundle) -> AsyncIterator[EmbeddedEngine]:
    engine = EmbeddedEngine(timeout=5.0, threads=2)
    await engine.load(shipped_bundle)
    yield engine
    await engine.aclose()


def variant(**patch: Any) -> dict[str, Any]:
    doc = allowed_input()
    for dotted, value in patch.items():
        node = doc
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return doc


# (input, expected effect, expected reasons): one input per outcome the shipped policy has.
CASES: list[tuple[dict[str, Any], str, list[str]]] = [
    (variant(), "allow", []),
    (variant(agent__status="suspended"), "deny", ["agent_not_active"]),
    (variant(agent__version=None), "deny", ["version_not_active"]),
    (variant(action="payments.payout"), "deny", ["action_not_granted"]),
    (variant(agent__autonomy_level=0), "deny", ["autonomy_observe_only"]),
    (
        variant(agent__autonomy_level=1, resource__amount=500),
        "require_approval",
        ["amount_requires_approval"],
    ),
    (
        variant(agent__autonomy_level=2, context__risk="high"),
        "require_approval",
        ["risk_requires_approval"],
    ),
    (
        variant(resource__region="us-east-1", resource__classification="restricted"),
        "deny",
        ["residency_violation"],
    ),
    (variant(resource__amount="50"), "deny", ["amount_invalid"]),
]


@pytest.mark.parametrize(("doc", "effect", "reasons"), CASES)
async def test_shipped_policy_decisions(
    engine: EmbeddedEngine, doc: dict[str, Any], effect: str, reasons: list[str]
) -> None:
    result = await engine.evaluate(doc)
    assert result.failure is None
    assert (result.effect, list(result.reasons)) == (effect, reasons)
    assert result.allow is (effect == "allow")
    assert result.engine == "embedded"
    assert result.revision == "shipped"


async def test_concurrent_evaluations_are_consistent(engine: EmbeddedEngine) -> None:
    expected = [(await engine.evaluate(doc)).decision() for doc, _, _ in CASES]
    docs = [CASES[i % len(CASES)][0] for i in range(600)]
    results = await asyncio.gather(*(engine.evaluate(doc) for doc in docs))
    for i, result in enumerate(results):
        assert result.failure is None
        assert result.decision() == expected[i % len(CASES)]


async def test_each_worker_builds_once_per_bundle(
    shipped_bundle: LoadedBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decisions reuse a per-thread built bundle; they never recompile (~1 ms, not ~9 ms)."""
    builds: list[str] = []
    real = embedded.compile_bundle

    def counting(*args: Any, **kwargs: Any) -> Any:
        builds.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(embedded, "compile_bundle", counting)
    engine = EmbeddedEngine(timeout=5.0, threads=2)
    try:
        await engine.load(shipped_bundle)
        await asyncio.gather(*(engine.evaluate(allowed_input()) for _ in range(300)))
        assert 1 <= len(builds) <= 2
        assert len(set(builds)) == len(builds)  # at most one build per worker thread
        await engine.load(LoadedBundle(shipped_bundle.modules, shipped_bundle.data, "again"))
        before = len(builds)
        results = await asyncio.gather(*(engine.evaluate(allowed_input()) for _ in range(300)))
        assert {r.revision for r in results} == {"again"}
        assert len(builds) - before <= 2
    finally:
        await engine.aclose()


async def test_reload_switches_revision_under_load(shipped_bundle: LoadedBundle) -> None:
    deny_all = one_module(
        decision_module(
            'decision := {"effect": "deny", "allow": false, "reasons": ["frozen"], '
            '"obligations": []}'
        ),
        revision="frozen",
    )
    engine = EmbeddedEngine(timeout=5.0, threads=2)
    try:
        await engine.load(shipped_bundle)

        async def stream() -> list[Any]:
            out = []
            for _ in range(150):
                out.append(await engine.evaluate(allowed_input()))
            return out

        task = asyncio.gather(stream(), stream(), stream())
        await asyncio.sleep(0.02)
        await engine.load(deny_all)
        results = [r for batch in await task for r in batch]
        by_revision = {r.revision for r in results}
        assert by_revision <= {"shipped", "frozen"}
        for r in results:
            expected = ("allow", ()) if r.revision == "shipped" else ("deny", ("frozen",))
            assert (r.effect, r.reasons) == expected
        after = await engine.evaluate(allowed_input())
        assert (after.revision, after.reasons) == ("frozen", ("frozen",))
    finally:
        await engine.aclose()


async def test_not_loaded_and_closed_deny() -> None:
    engine = EmbeddedEngine(timeout=1.0)
    result = await engine.evaluate(allowed_input())
    assert (result.effect, result.failure) == ("deny", "engine_not_loaded")
    await engine.load(one_module(decision_module("decision := 1")))
    await engine.aclose()
    closed = await engine.evaluate(allowed_input())
    assert (closed.effect, closed.failure) == ("deny", "engine_not_loaded")
    with pytest.raises(PolicyLoadError):
        await engine.load(one_module(decision_module("decision := 1")))


@pytest.mark.parametrize(
    ("body", "failure", "detail"),
    [
        ("p := 1", "undefined_decision", ""),
        ("decision := 1", "malformed_decision", "not an object"),
        (
            'decision := {"effect": "allow", "allow": "true", "reasons": [], "obligations": []}',
            "malformed_decision",
            "allow is a string",
        ),
        (
            'decision := {"effect": "allow", "allow": true, "reasons": [], '
            '"obligations": []} if input.x\ndecision := 2 if input.x',
            "engine_error",
            "complete rules must not produce multiple outputs",
        ),
        ("decision := nope.fn(1)", "engine_error", "unknown function"),
    ],
)
async def test_broken_bundles_deny(body: str, failure: str, detail: str) -> None:
    engine = EmbeddedEngine(timeout=2.0)
    try:
        await engine.load(one_module(decision_module(body)))
        result = await engine.evaluate({"x": True})
        assert (result.effect, result.allow, result.failure) == ("deny", False, failure)
        assert detail in result.reasons[0]
    finally:
        await engine.aclose()


async def test_syntax_error_fails_the_load_and_keeps_the_previous_bundle(
    shipped_bundle: LoadedBundle,
) -> None:
    engine = EmbeddedEngine(timeout=2.0)
    try:
        await engine.load(shipped_bundle)
        with pytest.raises(PolicyLoadError, match="regopy rejected"):
            await engine.load(one_module("package agents.authz\n\ndecision := 1 +\n", revision="x"))
        result = await engine.evaluate(allowed_input())
        assert (result.effect, result.revision) == ("allow", "shipped")
    finally:
        await engine.aclose()


async def test_slow_policy_times_out() -> None:
    # A quadratic comprehension keeps regopy busy for ~1.5 s (600: 1.1 s measured).
    slow = decision_module(
        "n := count([x | some x in numbers.range(1, 700); some y in numbers.range(1, 700);"
        " x == y])\n"
        'decision := {"effect": "allow", "allow": true, "reasons": [], "obligations": []}'
        " if n > 0"
    )
    engine = EmbeddedEngine(timeout=0.3, threads=1)
    try:
        await engine.load(one_module(slow))
        started = time.perf_counter()
        result = await engine.evaluate({})
        assert (result.effect, result.failure) == ("deny", "engine_timeout")
        assert time.perf_counter() - started < 1.0
    finally:
        await engine.aclose()

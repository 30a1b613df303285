"""The shared fail-closed layer: decision shape checks, input encoding and the guard itself.

These tests drive `GuardedEngine` with scripted engines, so each failure mode is exercised
without depending on how a real engine happens to fail.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from control_plane.policy.engines import build_engine
from control_plane.policy.engines.base import (
    UNDEFINED,
    EngineNotLoadedError,
    EngineResult,
    GuardedEngine,
    LoadedBundle,
    PolicyEngine,
    PolicyEngineError,
    validate_decision,
)
from control_plane.policy.engines.inputs import InputLimits, InvalidInputError, encode_input

GOOD = {"effect": "allow", "allow": True, "reasons": [], "obligations": []}


def malformed(**patch: Any) -> dict[str, Any]:
    doc = dict(GOOD)
    for key, value in patch.items():
        if value is ...:
            doc.pop(key)
        else:
            doc[key] = value
    return doc


class ScriptedEngine(GuardedEngine):
    """Returns or raises whatever the test scripts, optionally after a delay."""

    name = "scripted"

    def __init__(self, outcome: object, *, delay: float = 0.0, timeout: float = 0.2) -> None:
        super().__init__(timeout=timeout, limits=InputLimits(max_bytes=4096, max_items=50))
        self.outcome = outcome
        self.delay = delay
        self.payloads: list[str] = []

    @property
    def revision(self) -> str | None:
        return "rev-1"

    async def load(self, bundle: LoadedBundle) -> None:
        return None

    async def verify(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None

    async def _evaluate_encoded(self, payload: str) -> tuple[object, str | None]:
        self.payloads.append(payload)
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome, "rev-1"


def assert_fail_closed(result: EngineResult, failure: str) -> None:
    assert result.effect == "deny"
    assert result.allow is False
    assert result.failure == failure
    assert len(result.reasons) == 1
    assert result.reasons[0].startswith(failure)
    assert result.obligations == ()


async def test_valid_decision_passes_through() -> None:
    doc = {
        "effect": "require_approval",
        "allow": False,
        "reasons": ["amount_requires_approval"],
        "obligations": [{"type": "redact", "fields": ["resource.iban"]}],
    }
    result = await ScriptedEngine(doc).evaluate({"action": "x"})
    assert result.failure is None
    assert result.decision() == doc
    assert result.engine == "scripted"
    assert result.revision == "rev-1"


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (None, "decision is null"),
        ([GOOD], "decision is an array"),
        ("allow", "decision is a string"),
        (True, "decision is a boolean"),
        (malformed(allow=...), "missing allow"),
        (malformed(effect=..., reasons=...), "missing effect, reasons"),
        (malformed(allow="true"), "allow is a string, not a boolean"),
        (malformed(allow=1), "allow is a number, not a boolean"),
        (malformed(allow=None), "allow is null, not a boolean"),
        (malformed(effect="ALLOW"), "effect must be one of"),
        (malformed(effect="permit"), "effect must be one of"),
        (malformed(effect=None), "effect must be one of"),
        (malformed(effect="deny"), "allow=true contradicts effect=deny"),
        (malformed(effect="require_approval"), "allow=true contradicts effect=require_approval"),
        (malformed(allow=False), "allow=false contradicts effect=allow"),
        (malformed(reasons="ok"), "reasons must be a list of strings"),
        (malformed(reasons=[1]), "reasons must be a list of strings"),
        (malformed(reasons=[None]), "reasons must be a list of strings"),
        (malformed(reasons=["x"] * 65), "reasons too long"),
        (malformed(reasons=["x" * 513]), "reasons too long"),
        (
            {"effect": "deny", "allow": False, "reasons": [], "obligations": []},
            "deny without a reason",
        ),
        (malformed(obligations={}), "obligations must be a list"),
        (malformed(obligations=["redact"]), "each obligation must be an object"),
        (malformed(obligations=[{"fields": []}]), "each obligation must be an object"),
        (malformed(obligations=[{"type": 1}]), "each obligation must be an object"),
    ],
)
async def test_wrong_shapes_deny(raw: object, detail: str) -> None:
    result = await ScriptedEngine(raw).evaluate({})
    assert_fail_closed(result, "malformed_decision")
    assert detail in result.reasons[0]


async def test_undefined_denies() -> None:
    assert_fail_closed(await ScriptedEngine(UNDEFINED).evaluate({}), "undefined_decision")
    assert validate_decision(UNDEFINED, engine="x", revision=None).reasons == (
        "undefined_decision",
    )


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (PolicyEngineError("boom"), "engine_error"),
        (RuntimeError("segfault-ish"), "engine_error"),
        (json.JSONDecodeError("Expecting value", "", 0), "engine_error"),
        (MemoryError(), "engine_error"),
        (EngineNotLoadedError("no bundle loaded"), "engine_not_loaded"),
        (TimeoutError(), "engine_timeout"),
    ],
)
async def test_exceptions_deny(error: BaseException, failure: str) -> None:
    assert_fail_closed(await ScriptedEngine(error).evaluate({}), failure)


async def test_slow_engine_denies_within_the_timeout() -> None:
    engine = ScriptedEngine(GOOD, delay=5.0, timeout=0.2)
    started = time.perf_counter()
    result = await engine.evaluate({})
    elapsed = time.perf_counter() - started
    assert_fail_closed(result, "engine_timeout")
    assert elapsed < 1.0


async def test_cancellation_is_not_swallowed() -> None:
    task = asyncio.create_task(ScriptedEngine(GOOD, delay=5.0, timeout=10).evaluate({}))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(
    ("doc", "detail"),
    [
        ([], "input must be a JSON object"),
        ({"x": float("nan")}, "numbers must be finite"),
        ({"x": float("inf")}, "numbers must be finite"),
        ({"x": [float("-inf")]}, "numbers must be finite"),
        ({1: "x"}, "object keys must be strings"),
        ({"x": b"bytes"}, "unsupported value type bytes"),
        ({"x": {1, 2}}, "unsupported value type set"),
        ({"x": "y" * 5000}, "exceeds 4096 bytes"),
        ({"x": list(range(51))}, "more than 50 items"),
    ],
)
async def test_bad_input_denies_without_calling_the_engine(doc: Any, detail: str) -> None:
    engine = ScriptedEngine(GOOD)
    result = await engine.evaluate(doc)
    assert_fail_closed(result, "invalid_input")
    assert detail in result.reasons[0]
    assert engine.payloads == []


def test_deep_input_is_rejected_iteratively() -> None:
    doc: Any = "leaf"
    for _ in range(10_000):  # deeper than Python's recursion limit
        doc = [doc]
    with pytest.raises(InvalidInputError, match="depth"):
        encode_input({"x": doc})


def test_encoding_keeps_unicode_and_replaces_lone_surrogates() -> None:
    text = encode_input({"a": "é😀\u2028", "b": "x\ud800y", "c": "\ud83d\ude00", "d": 'q"\\\x00'})
    assert json.loads(text) == {"a": "é😀\u2028", "b": "x\ufffdy", "c": "😀", "d": 'q"\\\x00'}
    text.encode("utf-8")  # always valid UTF-8


def test_fail_closed_results_are_typed() -> None:
    result = validate_decision(GOOD, engine="e", revision="r")
    assert result == EngineResult("allow", True, (), (), "e", "r")


def test_build_engine() -> None:
    with pytest.raises(ValueError, match="OPA base URL"):
        build_engine("opa", opa_url=None)
    with pytest.raises(ValueError, match="unknown policy engine"):
        build_engine("lua")
    with pytest.raises(ValueError, match="unknown policy engine"):
        build_engine("embedded")  # regopy: removed, it differed from OPA on numbers
    engine = build_engine("wasm", timeout=0.3, threads=1)
    assert isinstance(engine, PolicyEngine)
    assert engine.name == "wasm"
    asyncio.run(engine.aclose())
    opa = build_engine("opa", opa_url="http://127.0.0.1:1")
    assert opa.name == "opa"
    asyncio.run(opa.aclose())

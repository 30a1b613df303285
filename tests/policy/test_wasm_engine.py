"""The wasm engine: the module OPA compiled, failing closed like every engine.

Modules are compiled here by the pinned OPA (`opa build -t wasm`), exactly as an upload is.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from control_plane.policy.bundles import read_policy_dir
from control_plane.policy.engines.base import Effect, FailureCode, LoadedBundle, PolicyLoadError
from control_plane.policy.engines.wasm import WasmEngine, parse_rfc3339_ns
from control_plane.policy.validation.opa import build_wasm
from tests.policy.helpers import POLICIES, ROOT, allowed_input

pytestmark = pytest.mark.opa

ALLOW = '{"effect": "allow", "allow": true, "reasons": [], "obligations": []}'
DENY_X = '{"effect": "deny", "allow": false, "reasons": ["x"], "obligations": []}'
DECISION = f"package agents.authz\n\ndecision := {ALLOW}\n"


def compile_module(opa_bin: str, tmp_path: Path, source: str) -> bytes:
    root = tmp_path / "bundle"
    (root / "agents").mkdir(parents=True, exist_ok=True)
    (root / "agents" / "authz.rego").write_text(source)
    wasm, issues = build_wasm(opa_bin, root, "agents/authz/decision", 60.0)
    assert issues == []
    assert wasm is not None
    return wasm


def decide(
    wasm: bytes, doc: dict[str, Any], *, data: dict[str, Any] | None = None, **options: Any
) -> Any:
    async def run() -> Any:
        engine = WasmEngine(**options)
        try:
            await engine.load(LoadedBundle({}, data or {}, "1", wasm=wasm))
            return await engine.evaluate(doc)
        finally:
            await engine.aclose()

    return asyncio.run(run())


def test_a_module_decides(opa_bin: str, tmp_path: Path) -> None:
    result = decide(compile_module(opa_bin, tmp_path, DECISION), {})
    assert (result.effect, result.allow, result.failure, result.engine) == (
        Effect.allow,
        True,
        None,
        "wasm",
    )


def test_a_trap_is_a_deny_with_a_reason(opa_bin: str, tmp_path: Path) -> None:
    # Two values for one complete rule: OPA's module aborts (a conflict error in OPA too).
    source = (
        "package agents.authz\n\n"
        f"decision := {ALLOW} if input.a\n\n"
        f"decision := {DENY_X} if input.b\n"
    )
    result = decide(compile_module(opa_bin, tmp_path, source), {"a": True, "b": True})
    assert (result.effect, result.allow, result.failure) == (Effect.deny, False, "engine_error")
    assert result.reasons[0].startswith("engine_error: ")


def test_exceeding_memory_is_a_deny(opa_bin: str, tmp_path: Path) -> None:
    source = (
        "package agents.authz\n\n"
        'decision := {"effect": "allow", "allow": true, "reasons": [], "obligations": [], '
        '"x": [s | some i in numbers.range(1, input.n); s := concat("", ["a", "b"])]}\n'
    )
    wasm = compile_module(opa_bin, tmp_path, source)
    result = decide(wasm, {"n": 10_000_000}, max_memory_pages=64, timeout=5)
    assert (result.effect, result.allow, result.failure) == (Effect.deny, False, "engine_error")
    assert "opa_malloc: failed" in result.reasons[0], result.reasons  # the allocator gave up
    # The same module within its limits decides.
    assert decide(wasm, {"n": 3}).failure is None


def test_exceeding_the_time_limit_is_a_deny(opa_bin: str, tmp_path: Path) -> None:
    source = (
        "package agents.authz\n\n"
        'decision := {"effect": "allow", "allow": true, "reasons": [], "obligations": []} if {\n'
        "\tcount([i | some i in numbers.range(1, input.n); i % 7 == 0]) > 0\n}\n"
    )
    wasm = compile_module(opa_bin, tmp_path, source)
    result = decide(wasm, {"n": 10**12}, timeout=0.3, max_memory_pages=16384)
    assert (result.effect, result.allow) == (Effect.deny, False)
    assert result.failure in (FailureCode.engine_timeout, FailureCode.engine_error)
    assert decide(wasm, {"n": 10}).effect is Effect.allow


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('{"effect": "allow"}', "missing allow, reasons, obligations"),
        ('{"effect": "allow", "allow": false, "reasons": [], "obligations": []}', "contradicts"),
        ("true", "decision is a boolean, not an object"),
    ],
)
def test_a_decision_of_the_wrong_shape_is_a_deny(
    opa_bin: str, tmp_path: Path, value: str, problem: str
) -> None:
    wasm = compile_module(opa_bin, tmp_path, f"package agents.authz\n\ndecision := {value}\n")
    result = decide(wasm, {})
    assert (result.effect, result.allow, result.failure) == (
        Effect.deny,
        False,
        "malformed_decision",
    )
    assert problem in result.reasons[0]


def test_an_undefined_decision_is_a_deny(opa_bin: str, tmp_path: Path) -> None:
    wasm = compile_module(opa_bin, tmp_path, DECISION.replace("[]}\n", "[]} if input.never\n"))
    result = decide(wasm, {})
    assert (result.effect, result.failure) == (Effect.deny, "undefined_decision")


def test_a_revision_without_a_module_does_not_load() -> None:
    async def run() -> None:
        engine = WasmEngine()
        with pytest.raises(PolicyLoadError, match="no compiled module"):
            await engine.load(LoadedBundle({"a.rego": DECISION}, {}, "7"))
        result = await engine.evaluate({})
        assert (result.effect, result.failure) == (Effect.deny, "engine_not_loaded")
        await engine.aclose()

    asyncio.run(run())


def test_a_module_needing_a_host_builtin_the_engine_lacks_does_not_load(
    opa_bin: str, tmp_path: Path
) -> None:
    source = DECISION.replace('"reasons": []', '"reasons": [sprintf("%v", [input.x])]')
    wasm = compile_module(opa_bin, tmp_path, source)
    with pytest.raises(PolicyLoadError, match="host builtins this engine lacks: sprintf"):
        decide(wasm, {})


def test_the_host_time_builtin_is_undefined_where_opa_errors(opa_bin: str, tmp_path: Path) -> None:
    source = (
        "package agents.authz\n\n"
        'default decision := {"effect": "deny", "allow": false, "reasons": ["bad_time"], '
        '"obligations": []}\n\n'
        'decision := {"effect": "allow", "allow": true, "reasons": [], "obligations": []} if {\n'
        "\ttime.parse_rfc3339_ns(input.t) > 0\n}\n"
    )
    wasm = compile_module(opa_bin, tmp_path, source)
    assert decide(wasm, {"t": "2024-05-06T10:00:00+00:00"}).effect is Effect.allow
    for bad in ("2024-13-06T10:00:00Z", "2262-04-12T00:00:00Z", "x", 5):
        result = decide(wasm, {"t": bad})
        assert (result.effect, result.reasons, result.failure) == (
            Effect.deny,
            ("bad_time",),
            None,
        ), bad


def test_parse_rfc3339_ns_matches_opa(opa_bin: str) -> None:
    cases = [
        "2024-05-06T10:00:00Z",
        "2024-05-06T10:00:00.123456789+05:30",
        "2024-05-06T10:00:00,5Z",
        "2024-02-29T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-05-06T24:00:00Z",
        "2024-05-06T10:00:60Z",
        "2024-05-06T10:00:00+24:00",
        "2024-05-06T10:00:00+00:60",
        "2024-05-06T10:00:00+25:00",
        "2262-04-11T23:47:16.854775807Z",
        "2262-04-11T23:47:16.854775808Z",
        "1677-09-21T00:12:43.145224192Z",
        "1677-09-21T00:12:43.145224191Z",
        "0000-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999999999Z",
        "2024-05-06t10:00:00z",
    ]
    import json

    query = "{s: v | some s in input; v := time.parse_rfc3339_ns(s)}"
    proc = subprocess.run(
        [opa_bin, "eval", "--format", "json", "--stdin-input", query],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
    )
    expected = json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]
    for case in cases:
        got = parse_rfc3339_ns(case)
        assert (got if isinstance(got, int) else None) == expected.get(case), case


def test_the_committed_module_matches_the_shipped_rego(opa_bin: str) -> None:
    """policies/policy.wasm is what the pinned OPA compiles from policies/ (`make wasm`)."""
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build_policy_wasm.py"),
            "--check",
            "--opa",
            opa_bin,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_the_shipped_module_decides_like_the_rego(shipped_bundle: LoadedBundle) -> None:
    result = decide(shipped_bundle.wasm or b"", allowed_input(), data=dict(shipped_bundle.data))
    assert (result.effect, result.failure) == (Effect.allow, None)
    assert read_policy_dir(POLICIES).modules  # the module sits beside the Rego it came from


def test_no_evaluation_fails_across_reloads(opa_bin: str, tmp_path: Path) -> None:
    first = compile_module(opa_bin, tmp_path, DECISION)
    second = compile_module(opa_bin, tmp_path, f"package agents.authz\n\ndecision := {DENY_X}\n")

    async def run() -> list[Any]:
        engine = WasmEngine(threads=2)
        try:
            queued = []
            for number in range(1, 9):
                wasm = first if number % 2 else second
                await engine.load(LoadedBundle({}, {}, str(number), wasm=wasm))
                queued += [asyncio.ensure_future(engine.evaluate({})) for _ in range(25)]
                await asyncio.sleep(0)
            return list(await asyncio.gather(*queued))
        finally:
            await engine.aclose()

    results = asyncio.run(run())
    assert all(r.failure is None for r in results), {r.reasons for r in results}
    # Each decision names the revision that made it.
    for r in results:
        assert r.effect == ("allow" if int(r.revision) % 2 else "deny"), r


def test_a_module_loaded_again_keeps_its_own_data_and_limits(opa_bin: str, tmp_path: Path) -> None:
    # A process compiles a module once and loads it again from its compiled form: each engine
    # that loads it still has its own data document, deadline and memory cap.
    source = (
        "package agents.authz\n\n"
        'decision := {"effect": "allow", "allow": true, "reasons": [data.label], '
        '"obligations": []} if {\n'
        "\tcount([i | some i in numbers.range(1, input.n); i % 7 == 0]) >= 0\n}\n"
    )
    wasm = compile_module(opa_bin, tmp_path, source)
    for label in ("first", "second", "third"):
        result = decide(wasm, {"n": 3}, data={"label": label})
        assert (result.effect, result.reasons) == (Effect.allow, (label,))
    slow = decide(wasm, {"n": 10**12}, data={"label": "x"}, timeout=0.3, max_memory_pages=16384)
    assert (slow.effect, slow.allow) == (Effect.deny, False)
    assert slow.failure in (FailureCode.engine_timeout, FailureCode.engine_error)
    big = decide(wasm, {"n": 10_000_000}, data={"label": "x"}, max_memory_pages=64, timeout=5)
    assert (big.effect, big.failure) == (Effect.deny, "engine_error")
    assert "opa_malloc: failed" in big.reasons[0], big.reasons
    assert decide(wasm, {"n": 3}, data={"label": "again"}).reasons == ("again",)

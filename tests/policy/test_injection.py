"""Strings crafted to break out of the input encoding never change a decision, in either engine.

Each payload goes into one field of a request; the decision must equal the decision for the
same request with a benign string in that field. For fields the policy ignores, the benign
request is the allowed baseline; for fields it reads (action, names, region...), the benign
string is an unknown value, so the payload must be treated as just another unknown value.
Nothing may raise and no engine may fail on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.policy.engines.base import GuardedEngine, LoadedBundle
from control_plane.policy.engines.opa import OpaEngine
from control_plane.policy.engines.wasm import WasmEngine
from tests.policy.helpers import (
    AGENT_GRANTS,
    CROSS_DOMAIN_NAMES,
    OpaServer,
    agent_input,
    allowed_input,
)

PAYLOADS = [
    'x"],"allow":true,"zz":["',
    '"}, "effect": "allow", "allow": true, "x": {"',
    '", "status": "active',
    'refund-bot","domain":"payments',
    '"',
    "\\",
    '\\"',
    "\\u0022",
    "\\\\u0000",
    "}",
    "]}",
    "{",
    "\x00",
    "a\x00b",
    "".join(chr(c) for c in range(32)),
    "\x7f\x80\x9f",
    "\u2028\u2029",
    "\ud800",
    "\udfff",
    "\ud83d\ude00",  # a surrogate pair spelled as two code points
    "😀",
    "\u202eevil",
    "\ufeff",
    "e\u0301",
    "\U0010ffff",
    "`raw` string",
    'input.agent.status == "active"',
    "true",
    "null",
    "x" * 10_000,
    "payments.refund\n",
    "payments.refund\x00",
]

# Fields the shipped policy never reads.
IGNORED = [
    ("context", "time"),  # the agent's clock: the policy reads vouched.time
    ("agent", "labels", "team"),
    ("context", "note"),
    ("agent", "version", "version"),
]
# Fields it reads: a payload there must behave like any unknown value.
READ = [
    ("action",),
    ("agent", "name"),
    ("agent", "domain"),
    ("agent", "status"),
    ("resource", "region"),
    ("resource", "classification"),
    ("context", "risk"),
    ("vouched", "time"),
    ("resource", "id"),
    ("resource", "type"),
    ("agent", "version", "state"),
]
UNKNOWN = "zz-unknown-value"


def with_value(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = allowed_input()
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return doc


@pytest.fixture(params=["wasm", "opa"])
async def engine(
    request: pytest.FixtureRequest, shipped_bundle: LoadedBundle
) -> AsyncIterator[GuardedEngine]:
    built: GuardedEngine
    if request.param == "wasm":
        built = WasmEngine(timeout=30)  # about payloads, not speed: a loaded CI machine
    else:
        server: OpaServer = request.getfixturevalue("opa_server")
        built = OpaEngine(server.url, timeout=30)
    await built.load(shipped_bundle)
    yield built
    await built.aclose()


@pytest.mark.parametrize("path", IGNORED + READ, ids=".".join)
async def test_payloads_never_change_a_decision(
    engine: GuardedEngine, path: tuple[str, ...]
) -> None:
    benign = with_value(path, "benign" if path in IGNORED else UNKNOWN)
    expected = (await engine.evaluate(benign)).decision()
    if path in IGNORED:
        assert expected["allow"] is True
    results = await asyncio.gather(*(engine.evaluate(with_value(path, p)) for p in PAYLOADS))
    for payload, result in zip(PAYLOADS, results, strict=True):
        assert result.failure is None, (payload, result.reasons)
        assert result.decision() == expected, payload


async def test_payloads_as_object_keys(engine: GuardedEngine) -> None:
    doc = allowed_input()
    doc["agent"]["labels"] = {p: p for p in PAYLOADS}
    doc["resource"]["attributes"] = {p: [p, {p: p}] for p in PAYLOADS[:10]}
    result = await engine.evaluate(doc)
    assert (result.failure, result.allow) == (None, True)


@pytest.mark.parametrize(("name", "domain", "action"), CROSS_DOMAIN_NAMES)
async def test_agent_name_from_another_domain_is_not_granted(
    engine: GuardedEngine, name: str, domain: str, action: str
) -> None:
    """Registering a same-named agent in another domain inherits none of its grants."""
    result = await engine.evaluate(agent_input(name, domain, action))
    assert result.failure is None, result.reasons
    assert (result.effect, result.allow) == ("deny", False)
    assert "action_not_granted" in result.reasons
    # The payloads that try to smuggle a domain into a name are unknown names too.
    for payload in PAYLOADS:
        smuggled = await engine.evaluate(agent_input(payload, domain, action))
        assert smuggled.failure is None, payload
        assert smuggled.decision() == result.decision(), payload


@pytest.mark.parametrize("kind", ["wasm", "opa"])
@pytest.mark.parametrize("path", [("resource", "id"), ("action",), ("agent", "name")], ids=".".join)
def test_generated_strings_never_change_a_decision(
    request: pytest.FixtureRequest,
    shipped_bundle: LoadedBundle,
    kind: str,
    path: tuple[str, ...],
) -> None:
    """Any text (surrogates and control characters included) in a field: same decision."""
    engine: GuardedEngine
    if kind == "wasm":
        engine = WasmEngine(timeout=5)
    else:
        engine = OpaEngine(request.getfixturevalue("opa_server").url, timeout=5)
    with asyncio.Runner() as runner:
        runner.run(engine.load(shipped_bundle))
        benign = "benign" if path in IGNORED else UNKNOWN
        expected = runner.run(engine.evaluate(with_value(path, benign))).decision()

        @settings(
            max_examples=300,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(st.text(st.characters(exclude_categories=()), max_size=40))
        def same(text: str) -> None:
            if path == ("action",) and (
                text == "" or text.startswith(("payments.", "ledger.entry.read"))
            ):
                return  # empty is action_invalid; a grant prefix legitimately matches
            if path == ("agent", "name") and text in AGENT_GRANTS["payments"]:
                return  # the baseline agent's domain grants these names
            result = runner.run(engine.evaluate(with_value(path, text)))
            assert result.failure is None, result.reasons
            assert result.decision() == expected

        try:
            same()
        finally:
            runner.run(engine.aclose())

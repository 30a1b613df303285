"""The trust boundary of the shipped policy, as a property over real engines.

For any decision input, the agent's claims (``resource.*`` and ``context.*`` beyond the fields
that name the request, ``data.authz.trust.request_fields``, and the amount attribute the action
declares) may only make the decision stricter: with any claims added or changed, the effect is
never more permissive than with none of them, and the redaction the declared classification
demands is never lifted. Evaluated by the in-process engine (the OPA-compiled WebAssembly
module, ``policies/policy.wasm``) and by a real OPA server, which must also agree with each other.

The reported faults of issue 20 that the policy decides (1-3) are also replayed input by input
through both engines (``test_the_reported_faults_in_both_engines``); each has its Rego unit test
in ``policies/agents/authz_test.rego`` as well (run by ``opa test``, ``agentctl policy test``).
Faults 4-6 are the control plane's (redaction of what is stored, replayed decisions, the
bootstrap token) and are tested over HTTP in ``tests/decisions/test_trust_api.py`` and
``tests/operators/``.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_plane.policy.engines.base import EngineResult, LoadedBundle
from control_plane.policy.engines.opa import OpaEngine
from control_plane.policy.engines.wasm import WasmEngine
from tests.policy.helpers import POLICIES, OpaServer
from tests.policy.test_parity import GRANTED, OTHER_ACTIONS, timestamps

pytestmark = pytest.mark.opa

DATA = json.loads((POLICIES / "data.json").read_text())["authz"]
STRICTNESS = {"allow": 0, "require_approval": 1, "deny": 2}
REQUEST_FIELDS = {tuple(f.split(".")) for f in DATA["trust"]["request_fields"]}
LEVELS = DATA["classification"]["levels"]
REGIONS = ["eu-west-1", "eu-central-1", "us-east-1", "ap-south-1"]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**9) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
CLAIM_KEYS = st.sampled_from(
    [
        "classification",
        "Classification",
        "risk",
        "amount",
        "amount_eur",
        "Amount",
        "time",
        "region",
        "observe_only",
        "autonomy_level",
        "kind",
        "agent",
        "action",
        "status",
        "note",
    ]
)
CLAIM_VALUES = st.one_of(
    st.sampled_from(LEVELS),
    st.sampled_from(sorted(DATA["risk_levels"])),
    st.sampled_from(["read", "active", 3, 0, -1, True, "2024-05-06T10:00:00Z", "*"]),
    JSON,
)


def declared_amount_path(action: Any) -> tuple[str, ...] | None:
    declared = DATA["actions"].get(action) if isinstance(action, str) else None
    if isinstance(declared, dict) and isinstance(declared.get("amount"), dict):
        return ("resource", declared["amount"]["attribute"])
    return None


@st.composite
def bare_inputs(draw: st.DrawFn) -> dict[str, Any]:
    """Vouched facts and the request only: no claims beyond the request fields and amount."""
    name, domain, action = draw(st.sampled_from(GRANTED))
    if draw(st.integers(0, 5)) == 0:
        action = draw(st.sampled_from(OTHER_ACTIONS))
    resource: dict[str, Any] = {
        "type": draw(st.sampled_from([*DATA["classification"]["resource_types"], "widget"])),
        "id": draw(st.sampled_from(["pay-1", "vip-1", "o-1"])),
    }
    if draw(st.integers(0, 4)) > 0:
        resource["region"] = draw(st.sampled_from(REGIONS))
    if declared_amount_path(action) is not None and draw(st.integers(0, 4)) > 0:
        resource["amount"] = draw(st.sampled_from([0, 50, 100, 101, 5000, 9000, 20000]))
    return {
        "agent": {
            "id": "agt-1",
            "name": name,
            "domain": domain,
            "status": "active",
            "autonomy_level": draw(st.sampled_from([0, 1, 2, 3])),
            "version": {"id": "ver-1", "version": "1.0.0", "state": "active"},
            "labels": {},
        },
        "action": action,
        "resource": resource,
        "context": {},
        "vouched": {"time": draw(timestamps())},
    }


@st.composite
def claims(draw: st.DrawFn, action: Any) -> list[tuple[tuple[str, ...], Any]]:
    """Claimed fields to add or change: anywhere in resource or context, at any depth, except
    the request fields and the action's declared amount attribute."""
    out = []
    amount = declared_amount_path(action)
    for _ in range(draw(st.integers(1, 4))):
        root = draw(st.sampled_from(["resource", "context"]))
        depth = draw(st.sampled_from([0, 0, 0, 1]))
        keys = [draw(st.text(min_size=1, max_size=6)) for _ in range(depth)]
        path = (root, *keys, draw(CLAIM_KEYS))
        if path[:2] in REQUEST_FIELDS or path == amount or path[:2] == ("resource", "type"):
            continue
        out.append((path, draw(CLAIM_VALUES)))
    return out


def with_claims(doc: dict[str, Any], claimed: list[tuple[tuple[str, ...], Any]]) -> Any:
    out = copy.deepcopy(doc)
    for path, value in claimed:
        node = out
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[path[-1]] = value
    return out


def redacted(result: EngineResult) -> set[str]:
    return {
        field
        for o in result.obligations
        if o.get("type") == "redact"
        for field in o.get("fields", [])
    }


def test_claims_only_make_decisions_stricter(
    opa_server: OpaServer, shipped_bundle: LoadedBundle
) -> None:
    seen: dict[str, int] = {"stricter": 0, "base_allow": 0}
    with asyncio.Runner() as runner:
        wasm = WasmEngine(timeout=10, threads=2)
        opa = OpaEngine(opa_server.url, timeout=10)
        runner.run(wasm.load(shipped_bundle))
        runner.run(opa.load(shipped_bundle))

        async def both(doc: Any) -> tuple[EngineResult, EngineResult]:
            first, second = await asyncio.gather(wasm.evaluate(doc), opa.evaluate(doc))
            return first, second

        @settings(
            max_examples=600,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(st.data())
        def stricter_only(data: st.DataObject) -> None:
            bare = data.draw(bare_inputs())
            claimed = with_claims(bare, data.draw(claims(bare["action"])))
            base_pair = runner.run(both(bare))
            claimed_pair = runner.run(both(claimed))
            for base, got in zip(base_pair, claimed_pair, strict=True):
                assert base.failure is None, base.reasons
                if got.failure == "invalid_input":
                    continue  # refused up front by the engine: a deny, never a grant
                assert got.failure is None, got.reasons
                assert STRICTNESS[got.effect] >= STRICTNESS[base.effect], (bare, claimed, got)
                assert got.allow <= base.allow
                # The declared classification's redaction is never lifted by a claim.
                assert redacted(got) >= redacted(base), (bare, claimed)
                if "residency_violation" in base.reasons:
                    assert got.effect == "deny"
            assert base_pair[0].decision() == base_pair[1].decision()
            if claimed_pair[0].failure is None and claimed_pair[1].failure is None:
                assert claimed_pair[0].decision() == claimed_pair[1].decision()
            seen["base_allow"] += base_pair[1].effect == "allow"
            seen["stricter"] += STRICTNESS[claimed_pair[1].effect] > STRICTNESS[base_pair[1].effect]

        try:
            stricter_only()
        finally:
            runner.run(wasm.aclose())
            runner.run(opa.aclose())
    # The run reached both sides: allowed baselines, and claims that made a decision stricter.
    assert seen["base_allow"] >= 30, seen
    assert seen["stricter"] >= 10, seen


DROP = object()
REFUND = {"type": "order", "id": "o-1", "amount": 40, "region": "eu-west-1"}
FAULTS: list[tuple[str, dict[str, Any], str, list[str]]] = [
    # 1. a claimed public does not lift residency, with or without a region ...
    (
        "payments.refund",
        {"classification": "public", "region": "ap-south-1"},
        "deny",
        ["residency_violation"],
    ),
    (
        "payments.refund",
        {"classification": "public", "region": DROP},
        "deny",
        ["residency_violation"],
    ),
    # 2. a missing amount does not slip past the threshold, nor one under another name
    ("payments.refund", {"amount": DROP}, "deny", ["amount_missing"]),
    ("payments.refund", {"amount": DROP, "amount_eur": 9000}, "deny", ["amount_missing"]),
    ("payments.refund", {"amount": None, "amount_eur": 9000}, "deny", ["amount_invalid"]),
    ("payments.refund", {"amount": "9000"}, "deny", ["amount_invalid"]),
    ("payments.refund", {"amount": -1}, "deny", ["amount_invalid"]),
    ("payments.refund", {"amount": 9000}, "require_approval", ["amount_requires_approval"]),
    # 3. read-only is the declared kind, not the spelling; wildcards in requests match nothing
    ("support.ticket.delete.read", {}, "deny", ["autonomy_observe_only", "unknown_action"]),
    (
        "support.refund.issue.view",
        {"amount": 9000},
        "deny",
        ["autonomy_observe_only", "unknown_action"],
    ),
    ("payments.invoice.*", {}, "deny", ["action_not_granted", "unknown_action"]),
    ("support.ticket.delete", {}, "deny", ["autonomy_observe_only"]),
    ("support.ticket.read", {}, "allow", []),
]
# Fault 3 is about an observe-only support agent holding support.*.
OBSERVER = {"name": "support-observer", "domain": "support", "autonomy_level": 0}


def fault_input(action: str, patch: dict[str, Any]) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "id": "agt-1",
        "name": "refund-bot",
        "domain": "payments",
        "status": "active",
        "autonomy_level": 2,
        "version": {"id": "v", "version": "1", "state": "active"},
        "labels": {},
    }
    resource: dict[str, Any] = dict(REFUND)
    if not action.startswith("payments."):
        agent.update(OBSERVER)
        resource = {"type": "ticket", "id": "t-1", "region": "eu-west-1"}
    for key, value in patch.items():
        if value is DROP:
            resource.pop(key, None)
        else:
            resource[key] = value
    return {
        "agent": agent,
        "action": action,
        "resource": resource,
        "context": {},
        "vouched": {"time": "2024-05-06T10:00:00Z"},
    }


@pytest.mark.parametrize(("action", "patch", "effect", "reasons"), FAULTS)
def test_the_reported_faults_in_both_engines(
    opa_server: OpaServer,
    shipped_bundle: LoadedBundle,
    action: str,
    patch: dict[str, Any],
    effect: str,
    reasons: list[str],
) -> None:
    doc = fault_input(action, patch)
    got = []
    with asyncio.Runner() as runner:
        for engine in (WasmEngine(timeout=10), OpaEngine(opa_server.url, timeout=10)):
            runner.run(engine.load(shipped_bundle))
            try:
                got.append(runner.run(engine.evaluate(doc)))
            finally:
                runner.run(engine.aclose())
    wasm, opa = got
    assert (opa.effect, sorted(opa.reasons)) == (effect, reasons), opa
    # The in-process engine gives exactly OPA's answer, obligations included.
    assert wasm.decision() == opa.decision()


def test_a_claimed_public_keeps_the_declared_redaction(
    opa_server: OpaServer, shipped_bundle: LoadedBundle
) -> None:
    """Fault 1, second half: claiming ``public`` does not stop the redaction the declared
    classification (order: confidential) demands, customer_email included."""
    plain = fault_input("payments.refund", {"customer_email": "a@example.com"})
    claimed = fault_input(
        "payments.refund", {"customer_email": "a@example.com", "classification": "public"}
    )
    with asyncio.Runner() as runner:
        for engine in (WasmEngine(timeout=10), OpaEngine(opa_server.url, timeout=10)):
            runner.run(engine.load(shipped_bundle))
            try:
                base = runner.run(engine.evaluate(plain))
                got = runner.run(engine.evaluate(claimed))
            finally:
                runner.run(engine.aclose())
            assert "**.customer_email" in redacted(base)
            assert redacted(got) == redacted(base)
            assert got.effect == base.effect == "allow"

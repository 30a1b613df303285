"""Local mode's decision core: the bundle's OPA-compiled policy, the agent's identity from its
verified token, and the same input the centre builds. No network I/O here.

The contract is docs/federation.md (section 5): the SDK is the vouching enforcement point.

1. The agent's access token is verified against the bundle's ``federation.jwks``
   (`_identity`), the ``domain`` claim against the bundle's domain. The agent document is
   ``federation.agents[sub]``: it never comes from the caller. A token that fails any check,
   or an agent the bundle does not hold, leaves ``input.agent`` out: the policy denies
   ``agent_missing``, as a stock OPA sidecar does.
2. The input is the centre's ``decision_input``: ``agent``, ``action``, ``resource``,
   ``context``, ``vouched.time`` (this process's clock, whole seconds, ``Z``).
3. The bundle's ``/policy.wasm`` (compiled by the centre's OPA from the active revision)
   evaluates ``agents/authz/decision`` over the bundle's data with ``federation.edge`` false,
   through ``opa-py-wasm`` on ``wasmtime`` (the optional extra ``local``). The one builtin OPA
   leaves to the host for the shipped policy, ``time.parse_rfc3339_ns``, is provided here; a
   module that needs any other host builtin is refused when the bundle loads.

This module imports joserfc and (when a bundle loads) opa-py-wasm: only local mode imports it.

Evaluation failures, undefined or malformed decision documents are denies with a reason, never
an allow and never an exception.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from agent_sdk._bundle import ENTRYPOINT, Bundle, BundleError, require_local_extra
from agent_sdk._exceptions import AgentControlPlaneError
from agent_sdk._identity import LEEWAY_SECONDS, Identity, TokenRefused, numeric

MAX_INPUT_BYTES: Final = 64 * 1024
_EFFECTS: Final = frozenset({"allow", "deny", "require_approval"})
_ACTION: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:*/-]{0,199}\Z")


def _require_wasm() -> Any:
    require_local_extra()
    import opapywasm

    return opapywasm


# --- the host builtin -----------------------------------------------------------------------------

_RFC3339: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:[.,]([0-9]+))?"
    r"(?:(Z)|([+-])([0-9]{2}):([0-9]{2}))\Z"
)


def parse_rfc3339_ns(value: object) -> int | None:
    """``time.parse_rfc3339_ns`` as OPA evaluates it (Go's ``time.Parse(time.RFC3339, v)``) for
    years 1-9999: nanoseconds since the epoch, or None where OPA's builtin errors (the call is
    then undefined). The policy checks the shape first, and the time is this process's own."""
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zulu, sign, off_h, off_m = match.groups()[6:]
    try:
        datetime(year, month, day, hour, minute, second)  # ranges, as Go checks them
    except ValueError:
        return None
    offset = 0
    if not zulu:
        if int(off_h) > 24 or int(off_m) > 60:
            return None
        offset = (int(off_h) * 60 + int(off_m)) * 60 * (-1 if sign == "-" else 1)
    seconds = calendar.timegm((year, month, day, hour, minute, second)) - offset
    total = seconds * 1_000_000_000 + int((fraction or "0")[:9].ljust(9, "0"))
    return total if -(2**63) <= total < 2**63 else None


_HOST_BUILTINS: Final = {"time.parse_rfc3339_ns": parse_rfc3339_ns}


def _policy_classes(opapywasm: Any) -> tuple[Any, Any]:
    """opa-py-wasm's policy and instance, with host builtins limited to ``_HOST_BUILTINS`` and
    an undefined answer where OPA's builtin errors (opa-py-wasm 1.2.x: a private hook; the
    extra pins ``<1.3``)."""
    from opapywasm.errors import OpaBuiltinError
    from opapywasm.instance import OpaPolicyInstance

    class Instance(OpaPolicyInstance):
        def _dispatch_builtin(self, builtin_id: int, ctx: int, arg_addrs: list[int]) -> int:
            name = self._builtin_id_to_name.get(builtin_id)
            function = _HOST_BUILTINS.get(name or "")
            if function is None:
                raise OpaBuiltinError(f"builtin {name or builtin_id} is not provided")
            args = [self._codec.opa_value_to_python(a, kind="builtin:arg") for a in arg_addrs]
            result = function(*args)
            if result is None:
                return 0
            return int(
                self._codec.python_object_to_opa_value(
                    result, limit=self._config.max_result_bytes, kind="builtin:result"
                )
            )

    class Policy(opapywasm.OpaWasmPolicy):  # type: ignore[misc]
        def _build_instance(self) -> Any:
            data, version = self._data_snapshot()
            return Instance(
                self._factory,
                self._config,
                self._abi_spec,
                initial_data=data,
                data_version=version,
                builtins=self._registry,
                epoch=self._factory.epoch,
            )

    return Policy, Instance


# --- JSON the way the centre encodes it -----------------------------------------------------------


def integral_floats_as_ints(value: Any) -> Any:
    """Integral floats up to 2^53 as ints: OPA's wasm hashes ``1.0`` and ``1`` differently, and
    the centre's engine feeds both input and data this way."""
    if isinstance(value, Mapping):
        return {k: integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [integral_floats_as_ints(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value) if abs(value) <= 2.0**53 else value
    return value


def encode(document: Any) -> str:
    try:
        text = json.dumps(
            integral_floats_as_ints(document),
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
        )
    except (TypeError, ValueError, RecursionError) as exc:
        raise AgentControlPlaneError(f"the decision input is not JSON: {exc}") from None
    if len(text.encode("utf-8", "surrogatepass")) > MAX_INPUT_BYTES:
        raise AgentControlPlaneError(f"the decision input exceeds {MAX_INPUT_BYTES} bytes")
    return text


def vouched_time(now: float | None = None) -> str:
    """The enforcement point's clock as the centre writes it: ``2026-01-31T12:00:00Z``."""
    at = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


# --- the loaded policy ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """One local decision: the validated document, the input evaluated, the token check."""

    document: dict[str, Any]
    input: dict[str, Any]
    token_refused: str | None
    eval_ns: int
    revision: int | None = None  # the policy revision that answered
    served_by: str = "active"  # or "canary": the agent is on the bundle's percentage canary


def _fail(reason: str) -> dict[str, Any]:
    return {"effect": "deny", "allow": False, "reasons": [reason], "obligations": []}


def _decision_problem(raw: object) -> str | None:
    if not isinstance(raw, dict):
        return "not an object"
    effect, allow = raw.get("effect"), raw.get("allow")
    reasons, obligations = raw.get("reasons"), raw.get("obligations")
    if effect not in _EFFECTS or not isinstance(allow, bool) or allow != (effect == "allow"):
        return "effect and allow disagree or are missing"
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        return "reasons must be strings"
    if effect != "allow" and not reasons:
        return f"{effect} without a reason"
    if not isinstance(obligations, list) or not all(
        isinstance(o, dict) and isinstance(o.get("type"), str) for o in obligations
    ):
        return "obligations must be objects with a type"
    return None


class LocalPolicy:
    """A verified bundle made ready to decide: its wasm module instantiated over its data.

    Built once per bundle revision (raises `BundleError` when the bundle cannot serve: no
    ``federation`` data, no module, a host builtin missing); ``decide`` is thread-safe.
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        reuse: LocalPolicy | None = None,
        pool_size: int = 2,
        eval_timeout: float = 1.0,
    ) -> None:
        opapywasm = _require_wasm()
        fed = bundle.data.get("federation")
        if not isinstance(fed, dict):
            raise BundleError("malformed", "no data.federation in the bundle")
        self.bundle = bundle
        self.identity = Identity.from_federation(fed)
        agents = fed.get("agents")
        self.agents: Mapping[str, Any] = agents if isinstance(agents, dict) else {}
        staleness = fed.get("max_staleness_seconds")
        self.max_staleness: float | None = (
            float(staleness) if isinstance(staleness, int | float) and numeric(staleness) else None
        )
        found = bundle.manifest.get("metadata")
        meta: dict[str, Any] = found if isinstance(found, dict) else {}
        found = meta.get("policy")
        policy: dict[str, Any] = found if isinstance(found, dict) else {}
        self.policy_bundle = str(policy.get("bundle") or "")
        revision = policy.get("revision")
        self.policy_revision = revision if isinstance(revision, int) else None
        # "canary" when the bundle is a canary revision that names this domain.
        self.policy_served_by = "canary" if policy.get("served_by") == "canary" else "active"
        # A routed bundle (a percentage canary, docs/federation.md section 2): the canary's
        # revision, and the agents the control plane put on it; the bundle's router sends
        # exactly these to it, so the answer's revision is known without asking the module.
        found = meta.get("canary")
        routed: dict[str, Any] = found if isinstance(found, dict) else {}
        revision = routed.get("revision")
        self.canary_revision = revision if isinstance(revision, int) else None
        found = fed.get("canary")
        on_canary = found.get("agents") if isinstance(found, dict) else None
        self.canary_agents: frozenset[str] = (
            frozenset(on_canary) if isinstance(on_canary, dict) else frozenset()
        )
        self._eval_timeout_ns = int(eval_timeout * 1e9)
        wasm = self._module(bundle, meta)
        data = dict(bundle.data)
        data["federation"] = {**fed, "edge": False}  # this copy only; the signed file is as is
        self._wasm_digest = hashlib.sha256(wasm).hexdigest()
        self._handed_over = False
        self._policy: Any
        if reuse is not None and reuse._wasm_digest == self._wasm_digest:
            # The module is unchanged (a registry or grant change): keep its compiled instances
            # and load the new data into them; compiling takes seconds, loading data does not.
            encoded = encode_data(data)
            self._policy = reuse._policy
            reuse._handed_over = True
            self._policy.set_data(encoded)
        else:
            self._policy = self._compile(opapywasm, wasm, data, pool_size, eval_timeout)
        self._token_cache: tuple[str, Mapping[str, Any]] | None = None

    @staticmethod
    def _module(bundle: Bundle, meta: Mapping[str, Any]) -> bytes:
        wasm = meta.get("wasm")
        if isinstance(wasm, dict) and wasm.get("entrypoint") == ENTRYPOINT:
            module = str(wasm.get("module", "")).lstrip("/")
            if module in bundle.files:
                return bundle.files[module]
        return bundle.wasm_module(ENTRYPOINT)

    @property
    def revision(self) -> str:
        return self.bundle.revision

    @staticmethod
    def _compile(
        opapywasm: Any, wasm: bytes, data: Mapping[str, Any], pool_size: int, timeout: float
    ) -> Any:
        policy_cls, _ = _policy_classes(opapywasm)
        config = opapywasm.PolicyConfig(
            pool_size=pool_size,
            borrow_timeout_seconds=timeout,
            eval_timeout_seconds=timeout,
            max_input_bytes=MAX_INPUT_BYTES + 1,
            max_data_bytes=1 << 30,
            parse_raw_json_input=False,
        )
        try:
            policy = policy_cls(wasm, config)
        except Exception as exc:
            raise BundleError("no_policy", f"the module does not load: {exc}") from None
        try:
            if ENTRYPOINT not in policy.entrypoints:
                raise BundleError("no_policy", f"the module has no entrypoint {ENTRYPOINT}")
            missing = sorted(set(policy.builtins) - set(_HOST_BUILTINS))
            if missing:
                raise BundleError("no_policy", "host builtins missing: " + ", ".join(missing))
            policy.set_data(encode_data(data))
        except BaseException:
            policy.close()
            raise
        return policy

    def close(self) -> None:
        """Release the module (unless a newer `LocalPolicy` took it over)."""
        if not self._handed_over:
            self._policy.close()

    def agent_for(self, token: str, now: float) -> tuple[dict[str, Any] | None, str | None]:
        """(agent document, None) for a valid token of a known agent, else (None, why)."""
        cached = self._token_cache
        try:
            if cached is not None and cached[0] == token:
                claims = cached[1]
                if now >= claims["exp"] + LEEWAY_SECONDS:
                    raise TokenRefused("expired")
            else:
                claims = self.identity.verify(token, now)
                self._token_cache = (token, claims)
        except TokenRefused as exc:
            return None, exc.reason
        agent = self.agents.get(claims["sub"])
        if not isinstance(agent, dict):
            return None, "unknown_agent"
        return agent, None

    def decide(
        self,
        token: str,
        action: str,
        resource: Mapping[str, Any],
        context: Mapping[str, Any] | None,
        now: float | None = None,
    ) -> Verdict:
        """Evaluate one decision; raises `AgentControlPlaneError` only for a malformed request
        (what the centre answers 422 for), never for a policy or engine failure."""
        if not isinstance(action, str) or not _ACTION.match(action):
            raise AgentControlPlaneError(f"invalid action {action!r}")
        for key in ("type", "id"):
            if not isinstance(resource.get(key), str) or not resource[key]:
                raise AgentControlPlaneError(f"resource needs a non-empty string {key!r}")
        at = time.time() if now is None else now
        agent, refused = self.agent_for(token, at)
        doc: dict[str, Any] = {
            "action": action,
            "resource": dict(resource),
            "context": dict(context or {}),
            "vouched": {"time": vouched_time(at)},
        }
        revision, served_by = self.policy_revision, self.policy_served_by
        if agent is not None:
            doc = {"agent": agent, **doc}
            if self.canary_revision is not None and agent.get("id") in self.canary_agents:
                revision, served_by = self.canary_revision, "canary"
        payload = encode(doc)
        started = time.perf_counter_ns()
        try:
            raw = self._policy.evaluate(payload, ENTRYPOINT)
        except Exception as exc:
            elapsed = time.perf_counter_ns() - started
            # As the centre names it: an evaluation stopped at its deadline (the machine was
            # busy, or the policy loops) is a timeout, anything else an engine error. The
            # deadline counts 10 ms epoch ticks from an arbitrary phase, so it may fire a tick
            # early: opapywasm's message says which, and the elapsed time backs it up.
            timed_out = "time limit" in str(exc) or elapsed >= self._eval_timeout_ns * 0.95
            document = _fail(
                "engine_timeout" if timed_out else f"engine_error: {type(exc).__name__}"
            )
            return Verdict(document, doc, refused, elapsed, revision, served_by)
        elapsed = time.perf_counter_ns() - started
        problem = _decision_problem(raw) if isinstance(raw, dict) else None
        if not isinstance(raw, dict):
            document = _fail("undefined_decision")
        elif problem is not None:
            document = _fail(f"malformed_decision: {problem}")
        else:
            document = {k: raw[k] for k in ("effect", "allow", "reasons", "obligations")}
        return Verdict(document, doc, refused, elapsed, revision, served_by)


def encode_data(data: Mapping[str, Any]) -> str:
    try:
        return json.dumps(integral_floats_as_ints(data), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise BundleError("malformed", f"bundle data is not JSON: {exc}") from None

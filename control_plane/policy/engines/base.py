"""The policy engine contract and the fail-closed layer every engine goes through.

A `PolicyEngine` evaluates the decision document of a loaded bundle for one input. Two real
implementations exist (`wasm`, the module OPA compiled, in process; `opa`, an OPA server); both
derive from `GuardedEngine`, which owns everything that must behave the same whatever evaluates:

- the input is encoded once (`inputs.encode_input`), with size limits, so both engines see the
  same bytes;
- evaluation is bounded in time;
- every failure (engine error, timeout, undefined result, result of the wrong shape, bad input,
  nothing loaded) becomes a deny with a stable reason, never an allow and never an exception;
- the decision document is validated in one place (`validate_decision`).

Reason codes for failures are the closed set `FailureCode`; a detail may follow after ": ".
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol, runtime_checkable

import structlog

from control_plane.policy.engines.inputs import InputLimits, InvalidInputError, encode_input

log = structlog.get_logger(__name__)


class Effect(StrEnum):
    """What a decision document says about the action."""

    allow = "allow"
    deny = "deny"
    require_approval = "require_approval"


class FailureCode(StrEnum):
    """Why a decision failed closed: the first word of its single reason."""

    engine_error = "engine_error"
    engine_timeout = "engine_timeout"
    undefined_decision = "undefined_decision"
    malformed_decision = "malformed_decision"
    invalid_input = "invalid_input"
    engine_not_loaded = "engine_not_loaded"
    no_active_policy = "no_active_policy"


DEFAULT_ENTRYPOINT: Final = "agents/authz/decision"
DEFAULT_TIMEOUT_SECONDS: Final = 0.5
DEFAULT_THREADS: Final = 2

# Bounds on what a decision document may carry, so a runaway policy cannot bloat the decision
# log; exceeding them is a malformed decision.
MAX_REASONS: Final = 64
MAX_REASON_LENGTH: Final = 512
MAX_OBLIGATIONS: Final = 64
_DETAIL_LENGTH: Final = 300


class _Undefined:
    """Marker for an undefined decision (OPA answers `{}` without `result`)."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = _Undefined()


class PolicyEngineError(Exception):
    """An engine could not produce a decision document (the guard turns it into a deny)."""


class EngineTimeoutError(PolicyEngineError):
    """The engine (or its transport) timed out."""


class EngineNotLoadedError(PolicyEngineError):
    """No bundle is loaded, the last load failed, or the engine is closed."""


class PolicyLoadError(Exception):
    """A bundle could not be loaded into an engine; the previous state is no longer trusted."""


@dataclass(frozen=True, slots=True)
class LoadedBundle:
    """One revision of a policy bundle as the engines receive it.

    `modules` maps a relative path (`agents/authz.rego`) to Rego source; `data` is the data
    document (the JSON object OPA would see at `data`). Engines ignore `*_test.rego` modules.
    `wasm` is the module OPA compiled from the runtime modules (`opa build -t wasm`), when the
    revision has one; only the wasm engine reads it.
    """

    modules: Mapping[str, str]
    data: Mapping[str, Any]
    revision: str
    digest: str = ""
    wasm: bytes | None = None


@dataclass(frozen=True, slots=True)
class EngineResult:
    """A validated decision. `failure` is set (and effect is deny) when the guard failed closed."""

    effect: Effect
    allow: bool
    reasons: tuple[str, ...]
    obligations: tuple[Mapping[str, Any], ...]
    engine: str
    revision: str | None
    failure: FailureCode | None = None
    duration_seconds: float = field(default=0.0, compare=False)

    def decision(self) -> dict[str, Any]:
        """The decision document as JSON-ready data (lists, not tuples)."""
        return {
            "effect": self.effect.value,
            "allow": self.allow,
            "reasons": list(self.reasons),
            "obligations": [dict(o) for o in self.obligations],
        }


@runtime_checkable
class PolicyEngine(Protocol):
    """What the control plane needs from an engine. `evaluate` never raises."""

    @property
    def name(self) -> str: ...

    @property
    def revision(self) -> str | None: ...

    async def load(self, bundle: LoadedBundle) -> None: ...

    async def evaluate(
        self, input_doc: Mapping[str, Any], *, encoded: str | None = None
    ) -> EngineResult: ...

    async def verify(self) -> bool:
        """Whether the engine still holds the revision it loaded (checked, not assumed)."""
        ...

    async def aclose(self) -> None: ...


def is_test_module(path: str) -> bool:
    """Rego test files are validated and run by `opa test`, but never loaded into an engine."""
    return path.endswith("_test.rego")


def runtime_modules(modules: Mapping[str, str]) -> dict[str, str]:
    """The modules an engine evaluates, in a stable order."""
    return {path: modules[path] for path in sorted(modules) if not is_test_module(path)}


def validate_decision(
    raw: object,
    *,
    engine: str,
    revision: str | None,
    duration_seconds: float = 0.0,
) -> EngineResult:
    """Turn a raw decision document into an EngineResult, or a deny if it has the wrong shape.

    This is the only place that decides whether an engine's answer is acceptable.
    """
    if raw is UNDEFINED:
        return fail_closed(FailureCode.undefined_decision, None, engine, revision, duration_seconds)
    problem = _decision_problem(raw)
    if problem is not None:
        return fail_closed(
            FailureCode.malformed_decision, problem, engine, revision, duration_seconds
        )
    assert isinstance(raw, dict)
    return EngineResult(
        effect=Effect(raw["effect"]),
        allow=raw["allow"],
        reasons=tuple(raw["reasons"]),
        obligations=tuple(raw["obligations"]),
        engine=engine,
        revision=revision,
        duration_seconds=duration_seconds,
    )


def _decision_problem(raw: object) -> str | None:
    if not isinstance(raw, dict):
        return f"decision is {_json_type(raw)}, not an object"
    missing = [k for k in ("effect", "allow", "reasons", "obligations") if k not in raw]
    if missing:
        return "missing " + ", ".join(missing)
    effect, allow, reasons, obligations = (
        raw["effect"],
        raw["allow"],
        raw["reasons"],
        raw["obligations"],
    )
    if not isinstance(effect, str) or effect not in Effect.__members__:
        return "effect must be one of allow, deny, require_approval"
    if not isinstance(allow, bool):
        return f"allow is {_json_type(allow)}, not a boolean"
    if allow != (effect == "allow"):
        return f"allow={str(allow).lower()} contradicts effect={effect}"
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        return "reasons must be a list of strings"
    if len(reasons) > MAX_REASONS or any(len(r) > MAX_REASON_LENGTH for r in reasons):
        return "reasons too long"
    if effect != "allow" and not reasons:
        return f"{effect} without a reason"
    if not isinstance(obligations, list) or len(obligations) > MAX_OBLIGATIONS:
        return "obligations must be a list of at most 64 objects"
    for obligation in obligations:
        if not isinstance(obligation, dict) or not isinstance(obligation.get("type"), str):
            return "each obligation must be an object with a string type"
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def fail_closed(
    code: FailureCode,
    detail: str | None,
    engine: str,
    revision: str | None,
    duration_seconds: float = 0.0,
) -> EngineResult:
    """A deny carrying one reason that names the failure."""
    reason = code if not detail else f"{code}: {_clip(detail)}"
    return EngineResult(
        effect=Effect.deny,
        allow=False,
        reasons=(reason,),
        obligations=(),
        engine=engine,
        revision=revision,
        failure=code,
        duration_seconds=duration_seconds,
    )


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_LENGTH else text[: _DETAIL_LENGTH - 3] + "..."


class GuardedEngine(ABC):
    """Base of the real engines: subclasses produce raw documents, this class fails closed.

    Subclasses implement `_evaluate_encoded(payload) -> (raw decision | UNDEFINED, revision)`,
    `load` and `aclose`; they may raise anything, the guard catches it.
    """

    name: str = "engine"

    def __init__(self, *, timeout: float, limits: InputLimits | None = None) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self._timeout = timeout
        self._limits = limits or InputLimits()

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    @abstractmethod
    def revision(self) -> str | None:
        """Revision of the bundle currently loaded, if any."""

    @abstractmethod
    async def load(self, bundle: LoadedBundle) -> None:
        """Make `bundle` the policy evaluated from now on; raises PolicyLoadError."""

    @abstractmethod
    async def verify(self) -> bool:
        """Whether the loaded revision is still what evaluates (False: load it again)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release threads, connections; evaluate denies afterwards."""

    @abstractmethod
    async def _evaluate_encoded(self, payload: str) -> tuple[object, str | None]:
        """Evaluate the entrypoint for an encoded input; may raise anything."""

    async def evaluate(
        self, input_doc: Mapping[str, Any], *, encoded: str | None = None
    ) -> EngineResult:
        """Evaluate the decision for `input_doc`. Never raises (except on cancellation).

        ``encoded``: `encode_input(input_doc, limits)` with this engine's limits, when the
        caller already has it (the decision service digests the same text), else encoded here.
        """
        started = time.perf_counter()
        revision = self.revision
        try:
            payload = encoded if encoded is not None else encode_input(input_doc, self._limits)
        except InvalidInputError as exc:
            return self._failed(FailureCode.invalid_input, str(exc), revision, started)
        try:
            async with asyncio.timeout(self._timeout):
                raw, revision = await self._evaluate_encoded(payload)
        except TimeoutError:
            return self._failed(FailureCode.engine_timeout, None, revision, started)
        except EngineTimeoutError:
            return self._failed(FailureCode.engine_timeout, None, revision, started)
        except EngineNotLoadedError as exc:
            return self._failed(FailureCode.engine_not_loaded, str(exc), revision, started)
        except PolicyEngineError as exc:
            return self._failed(FailureCode.engine_error, str(exc), revision, started)
        except Exception as exc:  # fail closed on anything an engine or its transport raises
            return self._failed(
                FailureCode.engine_error, f"{type(exc).__name__}: {exc}", revision, started
            )
        result = validate_decision(
            raw,
            engine=self.name,
            revision=revision,
            duration_seconds=time.perf_counter() - started,
        )
        if result.failure is not None:
            log.warning(
                "policy_decision_failed_closed",
                engine=self.name,
                revision=revision,
                failure=result.failure,
                reason=result.reasons[0],
            )
        return result

    def _failed(
        self, code: FailureCode, detail: str | None, revision: str | None, started: float
    ) -> EngineResult:
        result = fail_closed(code, detail, self.name, revision, time.perf_counter() - started)
        log.warning(
            "policy_decision_failed_closed",
            engine=self.name,
            revision=revision,
            failure=code,
            reason=result.reasons[0],
        )
        return result

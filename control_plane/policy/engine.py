"""The policy engine contract and the fail-closed layer every engine goes through.

A `PolicyEngine` evaluates the decision document of a loaded bundle for one input. Two real
implementations exist (`engines.embedded` on regopy, `engines.opa` on an OPA server); both derive
from `GuardedEngine`, which owns everything that must behave the same whatever evaluates:

- the input is encoded once, here (`encode_input`), with size limits, so both engines see the
  same bytes (lone surrogates become U+FFFD, as Go's JSON decoder does);
- evaluation is bounded in time;
- every failure (engine error, timeout, undefined result, result of the wrong shape, bad input,
  nothing loaded) becomes a deny with a stable reason, never an allow and never an exception;
- the decision document is validated in one place (`validate_decision`).

Reason codes for failures are stable strings: `engine_error`, `engine_timeout`,
`undefined_decision`, `malformed_decision`, `invalid_input`, `engine_not_loaded`; a detail may
follow after ": ".
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

import structlog

log = structlog.get_logger(__name__)

Effect = Literal["allow", "deny", "require_approval"]
EFFECTS: Final[frozenset[str]] = frozenset({"allow", "deny", "require_approval"})

DEFAULT_ENTRYPOINT: Final = "agents/authz/decision"
DEFAULT_TIMEOUT_SECONDS: Final = 0.5
DEFAULT_THREADS: Final = 2

# Failure codes: the first word of the single reason of a fail-closed decision.
ENGINE_ERROR: Final = "engine_error"
ENGINE_TIMEOUT: Final = "engine_timeout"
UNDEFINED_DECISION: Final = "undefined_decision"
MALFORMED_DECISION: Final = "malformed_decision"
INVALID_INPUT: Final = "invalid_input"
ENGINE_NOT_LOADED: Final = "engine_not_loaded"

# Bounds on what a decision document may carry, so a runaway policy cannot bloat the decision
# log; exceeding them is a malformed decision.
MAX_REASONS: Final = 64
MAX_REASON_LENGTH: Final = 512
MAX_OBLIGATIONS: Final = 64
_DETAIL_LENGTH: Final = 300
FLOAT_MIN_MAGNITUDE: Final = 1e-300
FLOAT_MAX_MAGNITUDE: Final = 1e300


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


class InvalidInputError(ValueError):
    """The input cannot be encoded as a bounded JSON document."""


class PolicyLoadError(Exception):
    """A bundle could not be loaded into an engine; the previous state is no longer trusted."""


@dataclass(frozen=True, slots=True)
class LoadedBundle:
    """One revision of a policy bundle as the engines receive it.

    `modules` maps a relative path (`agents/authz.rego`) to Rego source; `data` is the data
    document (the JSON object OPA would see at `data`). Engines ignore `*_test.rego` modules.
    """

    modules: Mapping[str, str]
    data: Mapping[str, Any]
    revision: str
    digest: str = ""


@dataclass(frozen=True, slots=True)
class InputLimits:
    """Bounds on an input document; regopy's input parsing is quadratic in container size."""

    max_bytes: int = 64 * 1024
    max_depth: int = 32
    max_items: int = 2_000


@dataclass(frozen=True, slots=True)
class EngineResult:
    """A validated decision. `failure` is set (and effect is deny) when the guard failed closed."""

    effect: Effect
    allow: bool
    reasons: tuple[str, ...]
    obligations: tuple[Mapping[str, Any], ...]
    engine: str
    revision: str | None
    failure: str | None = None
    duration_seconds: float = field(default=0.0, compare=False)

    def decision(self) -> dict[str, Any]:
        """The decision document as JSON-ready data (lists, not tuples)."""
        return {
            "effect": self.effect,
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

    async def evaluate(self, input_doc: Mapping[str, Any]) -> EngineResult: ...

    async def aclose(self) -> None: ...


def is_test_module(path: str) -> bool:
    """Rego test files are validated and run by `opa test`, but never loaded into an engine."""
    return path.endswith("_test.rego")


def runtime_modules(modules: Mapping[str, str]) -> dict[str, str]:
    """The modules an engine evaluates, in a stable order."""
    return {path: modules[path] for path in sorted(modules) if not is_test_module(path)}


def encode_input(input_doc: object, limits: InputLimits | None = None) -> str:
    """Encode an input document to the JSON text both engines receive.

    Raises InvalidInputError for anything that is not a bounded JSON object. The text keeps
    non-ASCII characters as they are: regopy stores `\\uXXXX` escapes verbatim inside strings, so
    escaping them would make the two engines compare different strings.
    """
    limits = limits or InputLimits()
    if not isinstance(input_doc, Mapping):
        raise InvalidInputError("input must be a JSON object")
    _check_shape(input_doc, limits)
    try:
        text = json.dumps(input_doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(f"input is not JSON: {exc}") from exc
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # Lone surrogates cannot travel as UTF-8; Go replaces them with U+FFFD, do the same.
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if len(text) > limits.max_bytes or len(text.encode("utf-8")) > limits.max_bytes:
        raise InvalidInputError(f"input exceeds {limits.max_bytes} bytes")
    return text


def _check_shape(doc: object, limits: InputLimits) -> None:
    """Iteratively check types, depth and total item count (no recursion on hostile input)."""
    items = 0
    stack: list[tuple[object, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children: list[object] = []
            for key, child in value.items():
                if not isinstance(key, str):
                    raise InvalidInputError("object keys must be strings")
                children.append(child)
        elif isinstance(value, list | tuple):
            children = list(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidInputError("numbers must be finite")
            if value and not FLOAT_MIN_MAGNITUDE <= abs(value) <= FLOAT_MAX_MAGNITUDE:
                # regopy 1.5.2 fails on subnormals, the smallest normals and the largest
                # doubles; both engines refuse them so they keep agreeing.
                raise InvalidInputError("float magnitude outside [1e-300, 1e300]")
            continue
        elif value is None or isinstance(value, str | int | bool):
            continue
        else:
            raise InvalidInputError(f"unsupported value type {type(value).__name__}")
        if depth > limits.max_depth:
            raise InvalidInputError(f"input nesting exceeds depth {limits.max_depth}")
        items += len(children)
        if items > limits.max_items:
            raise InvalidInputError(f"input has more than {limits.max_items} items")
        stack.extend((child, depth + 1) for child in children)


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
        return fail_closed(UNDEFINED_DECISION, None, engine, revision, duration_seconds)
    problem = _decision_problem(raw)
    if problem is not None:
        return fail_closed(MALFORMED_DECISION, problem, engine, revision, duration_seconds)
    assert isinstance(raw, dict)
    return EngineResult(
        effect=raw["effect"],
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
    if not isinstance(effect, str) or effect not in EFFECTS:
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
    code: str,
    detail: str | None,
    engine: str,
    revision: str | None,
    duration_seconds: float = 0.0,
) -> EngineResult:
    """A deny carrying one reason that names the failure."""
    reason = code if not detail else f"{code}: {_clip(detail)}"
    return EngineResult(
        effect="deny",
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
    async def aclose(self) -> None:
        """Release threads, connections; evaluate denies afterwards."""

    @abstractmethod
    async def _evaluate_encoded(self, payload: str) -> tuple[object, str | None]:
        """Evaluate the entrypoint for an encoded input; may raise anything."""

    async def evaluate(self, input_doc: Mapping[str, Any]) -> EngineResult:
        """Evaluate the decision for `input_doc`. Never raises (except on cancellation)."""
        started = time.perf_counter()
        revision = self.revision
        try:
            payload = encode_input(input_doc, self._limits)
        except InvalidInputError as exc:
            return self._failed(INVALID_INPUT, str(exc), revision, started)
        try:
            async with asyncio.timeout(self._timeout):
                raw, revision = await self._evaluate_encoded(payload)
        except TimeoutError:
            return self._failed(ENGINE_TIMEOUT, None, revision, started)
        except EngineTimeoutError:
            return self._failed(ENGINE_TIMEOUT, None, revision, started)
        except EngineNotLoadedError as exc:
            return self._failed(ENGINE_NOT_LOADED, str(exc), revision, started)
        except PolicyEngineError as exc:
            return self._failed(ENGINE_ERROR, str(exc), revision, started)
        except Exception as exc:  # fail closed on anything an engine or its transport raises
            return self._failed(ENGINE_ERROR, f"{type(exc).__name__}: {exc}", revision, started)
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
        self, code: str, detail: str | None, revision: str | None, started: float
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


def build_engine(
    kind: str,
    *,
    opa_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    threads: int = DEFAULT_THREADS,
    entrypoint: str = DEFAULT_ENTRYPOINT,
    limits: InputLimits | None = None,
) -> PolicyEngine:
    """Build the engine named by settings (`embedded` or `opa`)."""
    if kind == "embedded":
        from control_plane.policy.engines.embedded import EmbeddedEngine

        return EmbeddedEngine(
            timeout=timeout, threads=threads, entrypoint=entrypoint, limits=limits
        )
    if kind == "opa":
        if not opa_url:
            raise ValueError("the opa engine needs an OPA base URL")
        from control_plane.policy.engines.opa import OpaEngine

        return OpaEngine(opa_url, timeout=timeout, entrypoint=entrypoint, limits=limits)
    raise ValueError(f"unknown policy engine {kind!r}; expected 'embedded' or 'opa'")

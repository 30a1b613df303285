"""The policy engines behind one protocol, and the factory that builds the configured one.

`base` holds the `PolicyEngine` protocol, the `Effect` and `FailureCode` enums and the fail-closed
guard every engine derives from; `inputs` the one input encoding; `wasm` runs the module OPA
compiled for the revision in process, `opa` drives an OPA server over its REST API. The
implementations import `base`, never this package's factory, so there is no import cycle.
"""

from __future__ import annotations

from control_plane.policy.engines.base import (
    DEFAULT_ENTRYPOINT,
    DEFAULT_THREADS,
    DEFAULT_TIMEOUT_SECONDS,
    Effect,
    EngineResult,
    FailureCode,
    LoadedBundle,
    PolicyEngine,
    PolicyLoadError,
    fail_closed,
)
from control_plane.policy.engines.inputs import InputLimits, InvalidInputError, encode_input

__all__ = [
    "Effect",
    "EngineResult",
    "FailureCode",
    "InputLimits",
    "InvalidInputError",
    "LoadedBundle",
    "PolicyEngine",
    "PolicyLoadError",
    "build_engine",
    "encode_input",
    "fail_closed",
]


def build_engine(
    kind: str,
    *,
    opa_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    threads: int = DEFAULT_THREADS,
    entrypoint: str = DEFAULT_ENTRYPOINT,
    limits: InputLimits | None = None,
    load_timeout: float = 30.0,
) -> PolicyEngine:
    """Build the engine named by settings (`wasm` or `opa`); else ValueError. ``load_timeout``
    (seconds, the opa engine only): how long loading a revision may take."""
    if kind == "opa":
        if not opa_url:
            raise ValueError("the opa engine needs an OPA base URL")
        from control_plane.policy.engines.opa import OpaEngine

        return OpaEngine(
            opa_url,
            timeout=timeout,
            entrypoint=entrypoint,
            limits=limits,
            load_timeout=load_timeout,
        )
    if kind == "wasm":
        from control_plane.policy.engines.wasm import WasmEngine

        return WasmEngine(timeout=timeout, threads=threads, entrypoint=entrypoint, limits=limits)
    raise ValueError(f"unknown policy engine {kind!r}; expected 'wasm' or 'opa'")

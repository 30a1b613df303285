"""Embedded policy engine: regopy (rego-cpp) in a small dedicated thread pool.

Facts about regopy 1.5.2 this module is built around:

- `Interpreter.query()` recompiles on every call (~9 ms); `build()` once per bundle and then
  `query_bundle_entrypoint()` costs ~1 ms. Each worker thread therefore keeps its own
  interpreter and built bundle, rebuilt lazily when a new bundle is loaded.
- An interpreter used by two threads at once gives wrong answers or crashes the process: the
  interpreter lives in a thread-local of a pool owned by this engine, never shared.
- `set_input(dict)` does not escape strings (an input value can inject JSON and turn a deny into
  an allow); input goes in only through `set_input_term` with text from `encode_input`.
- ctypes releases the GIL, so evaluation runs off the event loop in parallel threads.
- Errors surface in three ways: `RegoError` (parse/compile), an output that is not ok (runtime
  errors such as conflicting values), and `JSONDecodeError` from the wrapper when the output is
  an error S-expression (an unknown function). All become a deny through `GuardedEngine`.
- Some failures cannot be caught: regopy aborts the process compiling `with input as {...}`
  over a rule that passes input to a builtin, and corrupts memory in `time.weekday` (and the
  timezone forms of `time.clock/date/format`) when greenlet was loaded before regopy. Load only
  bundles that passed `validation.validate_bundle` (it builds them in a child process, and its
  capabilities file leaves those builtins out).
- Strings keep their JSON escapes inside regopy (`"a\\tb"` has 4 characters there, 3 in OPA):
  equality and prefix tests agree with OPA on the escaped text `encode_input` produces, but
  string builtins that count or transform characters can differ on control characters.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import regopy

from control_plane.policy.engines.base import (
    DEFAULT_ENTRYPOINT,
    DEFAULT_THREADS,
    DEFAULT_TIMEOUT_SECONDS,
    UNDEFINED,
    EngineNotLoadedError,
    GuardedEngine,
    LoadedBundle,
    PolicyEngineError,
    PolicyLoadError,
    runtime_modules,
)
from control_plane.policy.engines.inputs import InputLimits

_ERRORMSG = re.compile(r"\(errormsg (\d+):")


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """An immutable loaded bundle; `generation` tells worker threads when to rebuild."""

    bundle: LoadedBundle
    generation: int
    modules: dict[str, str]
    data_json: str


@dataclass(slots=True)
class _Compiled:
    generation: int
    interpreter: Any
    built: Any


def compile_bundle(
    modules: dict[str, str], data_json: str, entrypoints: list[str]
) -> tuple[Any, Any]:
    """Build an interpreter and bundle; returns (interpreter, built). Raises PolicyLoadError."""
    interpreter = regopy.Interpreter()
    # The library prints its own error report on stdout; errors are read from nodes instead.
    interpreter.log_level = regopy.LogLevel.NONE
    try:
        for path, source in modules.items():
            interpreter.add_module(path, source)
        interpreter.add_data_json(data_json)
        built = interpreter.build(None, entrypoints)
    except regopy.RegoError as exc:
        raise PolicyLoadError(f"regopy rejected the bundle: {_first_error(str(exc))}") from exc
    if not built.ok():
        raise PolicyLoadError(f"regopy could not build the bundle: {node_errors(built.node())}")
    return interpreter, built


def node_errors(node: Any) -> str:
    """Readable messages from a regopy error node (an `ErrorSeq` or a single `Error`)."""
    texts: list[str] = []
    try:
        children = [node.at(i) for i in range(len(node))] if len(node) else [node]
        for child in children:
            texts.append(_first_error(child.json()))
    except Exception:  # the node API varies across regopy releases; a message is best effort
        return "unknown error"
    return "; ".join(t for t in texts if t) or "unknown error"


def _first_error(sexpr: str) -> str:
    """Extract `errormsg` texts from rego-cpp's S-expression error format.

    The one parser of regopy's error text in the project (validation reads OPA's JSON instead).
    """
    messages = []
    for match in _ERRORMSG.finditer(sexpr):
        length = int(match.group(1))
        messages.append(sexpr[match.end() : match.end() + length])
    return "; ".join(messages) if messages else sexpr.strip()[:200]


class EmbeddedEngine(GuardedEngine):
    """Evaluates bundles in-process with regopy; one interpreter per worker thread."""

    name = "embedded"

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        threads: int = DEFAULT_THREADS,
        entrypoint: str = DEFAULT_ENTRYPOINT,
        limits: InputLimits | None = None,
        load_timeout: float = 60.0,
    ) -> None:
        super().__init__(timeout=timeout, limits=limits)
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self._entrypoint = entrypoint.strip("/")
        self._load_timeout = load_timeout
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="policy-embedded"
        )
        self._local = threading.local()
        self._generations = itertools.count(1)
        self._snapshot: _Snapshot | None = None
        self._closed = False
        # Loads run one at a time, in call order, so the last load called is the one that wins.
        self._load_lock = asyncio.Lock()

    @property
    def revision(self) -> str | None:
        snapshot = self._snapshot
        return snapshot.bundle.revision if snapshot else None

    async def load(self, bundle: LoadedBundle) -> None:
        """Compile the bundle once (surfacing errors) before workers switch to it."""
        async with self._load_lock:
            if self._closed:
                raise PolicyLoadError("engine is closed")
            try:
                data_json = json.dumps(bundle.data, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise PolicyLoadError(f"bundle data is not JSON: {exc}") from exc
            snapshot = _Snapshot(
                bundle=bundle,
                generation=next(self._generations),
                modules=runtime_modules(bundle.modules),
                data_json=data_json,
            )
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self._load_timeout):
                    await loop.run_in_executor(self._executor, self._compiled_for, snapshot)
            except PolicyLoadError:
                raise
            except TimeoutError as exc:
                raise PolicyLoadError("compiling the bundle timed out") from exc
            except Exception as exc:
                raise PolicyLoadError(f"{type(exc).__name__}: {exc}") from exc
            self._snapshot = snapshot

    async def verify(self) -> bool:
        """In process, a loaded bundle stays loaded until the engine is closed."""
        return self._snapshot is not None and not self._closed

    async def aclose(self) -> None:
        self._closed = True
        self._snapshot = None
        # Running evaluations finish on their own; queued ones are dropped.
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _evaluate_encoded(self, payload: str) -> tuple[object, str | None]:
        snapshot = self._snapshot
        if snapshot is None or self._closed:
            raise EngineNotLoadedError("engine closed" if self._closed else "no bundle loaded")
        loop = asyncio.get_running_loop()
        raw = await loop.run_in_executor(
            self._executor, self._evaluate_in_thread, snapshot, payload
        )
        return raw, snapshot.bundle.revision

    # --- worker-thread side -------------------------------------------------------------------

    def _compiled_for(self, snapshot: _Snapshot) -> _Compiled:
        compiled: _Compiled | None = getattr(self._local, "compiled", None)
        if compiled is None or compiled.generation != snapshot.generation:
            # Drop the old interpreter first so two bundles are never held by one thread.
            self._local.compiled = None
            interpreter, built = compile_bundle(
                snapshot.modules, snapshot.data_json, [self._entrypoint]
            )
            compiled = _Compiled(snapshot.generation, interpreter, built)
            self._local.compiled = compiled
        return compiled

    def _evaluate_in_thread(self, snapshot: _Snapshot, payload: str) -> object:
        compiled = self._compiled_for(snapshot)
        interpreter = compiled.interpreter
        try:
            interpreter.set_input_term(payload)
            output = interpreter.query_bundle_entrypoint(compiled.built, self._entrypoint)
        except json.JSONDecodeError as exc:
            raise PolicyEngineError(
                "regopy returned an error instead of a value (unknown function?)"
            ) from exc
        except regopy.RegoError as exc:
            # The interpreter state is suspect after an internal error: rebuild next time.
            self._local.compiled = None
            raise PolicyEngineError(f"regopy: {_first_error(str(exc))}") from exc
        if not output.ok():
            raise PolicyEngineError(f"evaluation failed: {node_errors(output.node())}")
        results = output.results
        if not results or not results[0].expressions:
            return UNDEFINED
        if len(results) != 1 or len(results[0].expressions) != 1:
            raise PolicyEngineError("entrypoint produced more than one value")
        return results[0].expressions[0]

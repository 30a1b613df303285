"""WebAssembly policy engine: the module OPA compiled for a revision, run under wasmtime.

The semantics are OPA's own: `opa build -t wasm -e agents/authz/decision` compiles the revision's
Rego when it is uploaded (`validation.wasm_build`), the module is stored with the revision, and
this engine only runs it. Input and data are parsed by the module's own JSON parser (OPA's), so
numbers beyond 2^53, -0 and 1e308 mean in the engine what they mean in OPA. One exception found
by the parity corpus: the module hashes `1.0` and `1` differently (`1.0 in {1}` is false in wasm,
true in OPA), so integral floats reach it as integers, in the input and in the data.

Built on `opapywasm` (opa-py-wasm, pinned) over `wasmtime`:

- one `OpaWasmPolicy` per loaded revision, with a bounded pool of instances (`threads` of them);
  the data document is loaded into it once per revision;
- a module is compiled once per process (`_Factory`): loading a revision again takes
  milliseconds, not the compile's second;
- evaluation runs in this engine's own worker threads, off the event loop. wasmtime holds the
  GIL while the guest runs, so two threads add little throughput (see `make bench`);
- each evaluation is bounded in wall-clock time (wasmtime epoch interruption, `timeout`) and in
  linear memory (`max_memory_pages`); a trap, an abort, an exhausted memory or deadline raises,
  and `GuardedEngine` turns it into a deny with a reason.

Host builtins: OPA compiles most builtins into the module; the few it leaves to the host are
those in `HOST_BUILTINS`, implemented here to OPA's semantics (an error in OPA makes the call
undefined, so the host returns "undefined", not an error). opapywasm's own host builtins
(`sprintf` and others, best effort rather than OPA's) are never offered: a module calling any
other host builtin fails closed, and `capabilities.json` refuses such builtins at upload.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import opapywasm.policy
import wasmtime
from cachetools import LRUCache
from opapywasm import UNDEFINED as WASM_UNDEFINED
from opapywasm import OpaWasmPolicy, PolicyConfig
from opapywasm.errors import OpaBuiltinError, OpaPolicyClosedError
from opapywasm.instance import OpaPolicyInstance
from opapywasm.runtime import EpochTicker, WasmtimeRuntimeFactory

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
)
from control_plane.policy.engines.inputs import InputLimits, integral_floats_as_ints

# 64 KiB pages: 1024 pages = 64 MiB of linear memory per instance.
DEFAULT_MAX_MEMORY_PAGES: Final = 1024


class _Undefined:
    """What a host builtin returns when OPA's builtin would fail (the call is then undefined)."""


HOST_UNDEFINED: Final = _Undefined()

# --- host builtins -----------------------------------------------------------------------------

_MIN_NS: Final = -(2**63)
_MAX_NS: Final = 2**63 - 1
_DIGITS2 = r"([0-9]{2})"
_RFC3339 = re.compile(
    r"([0-9]{4})-"
    + _DIGITS2
    + "-"
    + _DIGITS2
    + "T"
    + _DIGITS2
    + ":"
    + _DIGITS2
    + ":"
    + _DIGITS2
    + r"(?:[.,]([0-9]+))?(?:(Z)|([+-])"
    + _DIGITS2
    + ":"
    + _DIGITS2
    + r")\Z"
)


def parse_rfc3339_ns(value: object) -> int | _Undefined:
    """`time.parse_rfc3339_ns` as OPA 1.22 evaluates it: Go's `time.Parse(time.RFC3339, v)`.

    Nanoseconds since the epoch (int), or HOST_UNDEFINED where OPA's builtin errors: not a
    string, not that layout, a field out of Go's ranges (month 1-12, a day that exists in the
    month, hour < 24, minute and second < 60, offset hour <= 24 and minute <= 60, as Go's
    general parser accepts), or a time outside the int64 nanosecond range.
    """
    if not isinstance(value, str):
        return HOST_UNDEFINED
    match = _RFC3339.match(value)
    if match is None:
        return HOST_UNDEFINED
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zulu, sign, off_h, off_m = match.groups()[6:]
    if not 1 <= month <= 12 or hour >= 24 or minute >= 60 or second >= 60:
        return HOST_UNDEFINED
    days_in_month = calendar.monthrange(year if year >= 1 else 2000 + year % 400, month)[1]
    if not 1 <= day <= days_in_month:
        return HOST_UNDEFINED
    offset = 0
    if not zulu:
        hours, minutes = int(off_h), int(off_m)
        if hours > 24 or minutes > 60:
            return HOST_UNDEFINED
        offset = (hours * 60 + minutes) * 60 * (-1 if sign == "-" else 1)
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    days = _days_from_civil(year, month, day)
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
    total = seconds * 1_000_000_000 + nanos
    if not _MIN_NS <= total <= _MAX_NS:
        return HOST_UNDEFINED
    return total


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar (any year, year 0 included)."""
    y = year - (month <= 2)
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


HOST_BUILTINS: Final[dict[str, Any]] = {"time.parse_rfc3339_ns": parse_rfc3339_ns}


class _Instance(OpaPolicyInstance):
    """An opapywasm instance whose host builtins are `HOST_BUILTINS` only, with "undefined".

    opapywasm 1.2.1 always encodes a host builtin's return value; OPA's ABI reads a null
    address as undefined, which is what OPA does when a builtin errors. This override (of a
    private method of the pinned version) returns 0 for HOST_UNDEFINED.
    """

    def _dispatch_builtin(self, builtin_id: int, ctx: int, arg_addrs: list[int]) -> int:
        name = self._builtin_id_to_name.get(builtin_id)
        function = HOST_BUILTINS.get(name or "")
        if function is None:
            raise OpaBuiltinError(f"builtin {name or builtin_id} is not provided by this engine")
        args = [
            self._codec.opa_value_to_python(addr, kind=f"builtin:{name}:arg") for addr in arg_addrs
        ]
        result = function(*args)
        if result is HOST_UNDEFINED:
            return 0
        return self._codec.python_object_to_opa_value(
            result, limit=self._config.max_result_bytes, kind=f"builtin:{name}:result"
        )


# Compiled modules by the SHA-256 of their bytes, in wasmtime's serialized form (1.5 MB for the
# shipped policy), the least recently loaded dropped first beyond this many bytes in all. A few
# revisions are live at once (active, canary, shadow, the ones an impact report builds).
COMPILED_MODULES_BYTES: Final = 64 * 1024 * 1024
_compiled: LRUCache[bytes, bytes] = LRUCache(maxsize=COMPILED_MODULES_BYTES, getsizeof=len)
_compiled_lock = threading.Lock()


class _Factory(WasmtimeRuntimeFactory):
    """opapywasm's runtime factory, compiling each module once per process.

    Compiling the shipped module takes 0.6 s here and loading its serialized form 3 ms. Each
    factory still has a wasmtime engine (and epoch ticker) of its own, configured as the
    pinned opapywasm 1.2.1 configures it; only the compilation is shared, so a revision loaded
    again (an engine restarted, the canary's and the shadow's engines, each app of a process
    that builds several) starts at once. `OpaWasmPolicy.__init__` builds its factory by this
    module-global name, hence the rebinding below: every `OpaWasmPolicy` of the process uses
    it (the SDK's too, when both run in one process).
    """

    def __init__(self, wasm_bytes: bytes, *, max_memory_pages: int | None = None) -> None:
        key = hashlib.sha256(wasm_bytes).digest()
        with _compiled_lock:
            compiled = _compiled.get(key)
        if compiled is None:
            super().__init__(wasm_bytes, max_memory_pages=max_memory_pages)
            serialized = bytes(self._module.serialize())
            if len(serialized) <= COMPILED_MODULES_BYTES:
                with _compiled_lock:
                    _compiled[key] = serialized
            return
        self._max_memory_pages = max_memory_pages
        config = wasmtime.Config()
        config.epoch_interruption = True
        self._engine = wasmtime.Engine(config)
        self._epoch = EpochTicker(self._engine)
        try:
            # Bytes this process serialized from a module it compiled and validated.
            self._module = wasmtime.Module.deserialize(self._engine, compiled)
            self._validate_required_env_imports()
        except BaseException:
            self._epoch.close()
            raise


opapywasm.policy.WasmtimeRuntimeFactory = _Factory  # type: ignore[attr-defined]


class _Policy(OpaWasmPolicy):
    """An `OpaWasmPolicy` whose pooled instances are `_Instance`."""

    def _build_instance(self) -> OpaPolicyInstance:
        data, version = self._data_snapshot()
        return _Instance(
            self._factory,
            self._config,
            self._abi_spec,
            initial_data=data,
            data_version=version,
            builtins=self._registry,
            epoch=self._factory.epoch,
        )


def missing_host_builtins(wasm: bytes) -> list[str]:
    """Host builtins the module imports that this engine does not provide (sorted)."""
    policy = _Policy(wasm, PolicyConfig(pool_size=1))
    try:
        return sorted(set(policy.builtins) - set(HOST_BUILTINS))
    finally:
        policy.close()


@dataclass(frozen=True, slots=True)
class _Loaded:
    bundle: LoadedBundle
    policy: OpaWasmPolicy


class WasmEngine(GuardedEngine):
    """Evaluates a revision's OPA-compiled module in process (see the module docstring)."""

    name = "wasm"

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        threads: int = DEFAULT_THREADS,
        entrypoint: str = DEFAULT_ENTRYPOINT,
        limits: InputLimits | None = None,
        max_memory_pages: int = DEFAULT_MAX_MEMORY_PAGES,
        load_timeout: float = 60.0,
    ) -> None:
        super().__init__(timeout=timeout, limits=limits)
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self._threads = threads
        self._entrypoint = entrypoint.strip("/")
        self._max_memory_pages = max_memory_pages
        self._load_timeout = load_timeout
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="policy-wasm")
        self._loaded: _Loaded | None = None
        self._closed = False
        self._load_lock = asyncio.Lock()

    @property
    def revision(self) -> str | None:
        loaded = self._loaded
        return loaded.bundle.revision if loaded else None

    async def load(self, bundle: LoadedBundle) -> None:
        """Instantiate the revision's module and load its data once; raises PolicyLoadError."""
        async with self._load_lock:
            if self._closed:
                raise PolicyLoadError("engine is closed")
            if not bundle.wasm:
                raise PolicyLoadError(
                    f"revision {bundle.revision} has no compiled module (stored without OPA); "
                    "upload it again with OPA available"
                )
            try:
                # Integral floats as ints, as in the input (see `inputs`): the module's sets and
                # object keys hash 1.0 and 1 differently, OPA treats them as one number.
                data = integral_floats_as_ints(bundle.data)
                data_json = json.dumps(data, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise PolicyLoadError(f"bundle data is not JSON: {exc}") from exc
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self._load_timeout):
                    policy = await loop.run_in_executor(
                        self._executor, self._instantiate, bundle.wasm, data_json
                    )
            except PolicyLoadError:
                raise
            except TimeoutError as exc:
                raise PolicyLoadError("instantiating the module timed out") from exc
            except Exception as exc:
                raise PolicyLoadError(f"{type(exc).__name__}: {exc}") from exc
            previous, self._loaded = self._loaded, _Loaded(bundle, policy)
            if previous is not None:
                # Running evaluations keep their instance until they finish; queued ones find
                # the policy closed and use the new one (`_evaluate_in_thread`).
                previous.policy.close()

    def _instantiate(self, wasm: bytes, data_json: str) -> OpaWasmPolicy:
        config = PolicyConfig(
            pool_size=self._threads,
            borrow_timeout_seconds=self.timeout,
            eval_timeout_seconds=self.timeout,
            max_memory_pages=self._max_memory_pages,
            max_input_bytes=self._limits.max_bytes + 1,
            parse_raw_json_input=False,  # the guard's encoded input is already valid JSON
        )
        policy = _Policy(wasm, config)
        try:
            if self._entrypoint not in policy.entrypoints:
                raise PolicyLoadError(
                    f"the module has no entrypoint {self._entrypoint} "
                    f"(it has {', '.join(sorted(policy.entrypoints)) or 'none'})"
                )
            missing = sorted(set(policy.builtins) - set(HOST_BUILTINS))
            if missing:
                raise PolicyLoadError(
                    f"the module needs host builtins this engine lacks: {', '.join(missing)}"
                )
            policy.set_data(data_json)
        except BaseException:
            policy.close()
            raise
        return policy

    async def verify(self) -> bool:
        """In process, a loaded module stays loaded until the engine is closed."""
        return self._loaded is not None and not self._closed

    async def aclose(self) -> None:
        self._closed = True
        loaded, self._loaded = self._loaded, None
        self._executor.shutdown(wait=False, cancel_futures=True)
        if loaded is not None:
            loaded.policy.close()

    async def _evaluate_encoded(self, payload: str) -> tuple[object, str | None]:
        loaded = self._loaded
        if loaded is None or self._closed:
            raise EngineNotLoadedError("engine closed" if self._closed else "no bundle loaded")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._evaluate_in_thread, loaded, payload)

    def _evaluate_in_thread(self, loaded: _Loaded, payload: str) -> tuple[object, str | None]:
        try:
            try:
                result = loaded.policy.evaluate(payload, self._entrypoint)
            except OpaPolicyClosedError:
                # A newer revision was loaded (and this one closed) while the call was queued:
                # decide with the newer one, and say so.
                current = self._loaded
                if current is None or current is loaded:
                    raise EngineNotLoadedError("engine closed") from None
                loaded = current
                result = loaded.policy.evaluate(payload, self._entrypoint)
        except OpaBuiltinError as exc:
            raise PolicyEngineError(f"host builtin: {exc}") from exc
        raw = UNDEFINED if result is WASM_UNDEFINED else result
        return raw, loaded.bundle.revision

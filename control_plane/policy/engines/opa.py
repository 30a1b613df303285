"""Remote policy engine: a real OPA server driven over its REST API.

One pooled `httpx.AsyncClient` per engine, explicit timeouts, no retries: a decision that does not
come back within the engine timeout is a deny (the guard in `base.py` bounds the whole call,
httpx's own timeouts bound each phase). OPA answers `{}` without `result` for an undefined
document; that, any non-200 answer and any unparseable body are failures the guard turns into a
deny.

Loading a bundle replaces the modules this engine owns (ids `<prefix>/<path>`) and the whole data
document (`PUT /v1/data`), so the OPA instance is assumed to be dedicated to this control plane.
OPA compiles all modules on every `PUT /v1/policies/{id}` and rejects a module that calls a
function no module defines yet (and the deletion of a module another one still calls), so the
puts and deletes run in rounds until no more progress is possible; a 4xx answer is retried only
after another operation changed what the compiler sees. Decisions wait while a load is in
progress (bounded by the evaluation timeout), so a decision never sees half a bundle and always
reports the revision it was evaluated against.

An OPA server that restarts comes back empty. Every load therefore also puts a marker module
(package `__agentctl__`: the revision and digest it completes), and the engine checks it rather
than assuming OPA still holds what was loaded: on an undefined decision, on a transport error and
whenever readiness is asked (`verify`). When the marker is missing or names another revision the
engine counts as not loaded, so decisions deny with `engine_not_loaded` and the runtime loads the
active revision again on the next decision; `/readyz` is not ready until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from control_plane.policy.engines.base import (
    DEFAULT_ENTRYPOINT,
    DEFAULT_TIMEOUT_SECONDS,
    UNDEFINED,
    EngineNotLoadedError,
    EngineTimeoutError,
    GuardedEngine,
    LoadedBundle,
    PolicyEngineError,
    PolicyLoadError,
    runtime_modules,
)
from control_plane.policy.engines.inputs import InputLimits

log = structlog.get_logger(__name__)

DEFAULT_POLICY_PREFIX = "agentctl"
MARKER_PACKAGE = "__agentctl__"


class _LoadGate:
    """Readers (decisions) run concurrently; a writer (load) waits for them and blocks new ones."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._readers = 0
        self._writer = False

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._writer)
            self._readers += 1
        try:
            yield
        finally:
            async with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._writer)
            self._writer = True
            await self._cond.wait_for(lambda: self._readers == 0)
        try:
            yield
        finally:
            async with self._cond:
                self._writer = False
                self._cond.notify_all()


class OpaEngine(GuardedEngine):
    """Evaluates decisions on an OPA server (`opa run --server`)."""

    name = "opa"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        entrypoint: str = DEFAULT_ENTRYPOINT,
        limits: InputLimits | None = None,
        policy_prefix: str = DEFAULT_POLICY_PREFIX,
        load_timeout: float = 30.0,
        max_connections: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(timeout=timeout, limits=limits)
        self._decision_path = "/v1/data/" + entrypoint.strip("/")
        self._prefix = policy_prefix.strip("/")
        self._load_timeout = load_timeout
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 1.0)),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=30.0,
            ),
            transport=transport,
            follow_redirects=False,
            trust_env=False,
        )
        self._gate = _LoadGate()
        self._revision: str | None = None
        self._marker: dict[str, str] | None = None
        self._loaded = False
        self._closed = False

    @property
    def revision(self) -> str | None:
        return self._revision if self._loaded else None

    async def health(self) -> bool:
        """Whether OPA answers its health endpoint."""
        try:
            response = await self._client.get("/health")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def verify(self) -> bool:
        """Whether OPA still holds the loaded revision (its marker); forgets it if not."""
        if not self._loaded or self._closed:
            return False
        expected = self._marker
        try:
            response = await self._client.get(f"/v1/data/{MARKER_PACKAGE}")
            body = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, json.JSONDecodeError, UnicodeDecodeError):
            return False  # unreachable: nothing is known to be lost, decisions deny meanwhile
        held = body.get("result") if isinstance(body, dict) else None
        if held == expected:
            return True
        if self._marker == expected and self._loaded:
            log.warning("opa_lost_policy", expected=expected, held=held)
            self._loaded = False
        return False

    async def aclose(self) -> None:
        self._closed = True
        self._loaded = False
        await self._client.aclose()

    # --- decisions ----------------------------------------------------------------------------

    async def _evaluate_encoded(self, payload: str) -> tuple[object, str | None]:
        if self._closed:
            raise EngineNotLoadedError("engine closed")
        async with self._gate.read():
            if not self._loaded:
                raise EngineNotLoadedError("no bundle loaded")
            revision = self._revision
            body = b'{"input":' + payload.encode("utf-8") + b"}"
            try:
                response = await self._client.post(
                    self._decision_path,
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
            except httpx.TimeoutException as exc:
                raise EngineTimeoutError(type(exc).__name__) from exc
            except httpx.HTTPError as exc:
                raise PolicyEngineError(f"OPA unreachable: {type(exc).__name__}: {exc}") from exc
            decision = _decision_from_response(response)
            if decision is UNDEFINED and not await self.verify():
                # A restarted OPA is empty: say so, and the runtime loads the revision again.
                raise EngineNotLoadedError(f"OPA no longer holds revision {revision}")
            return decision, revision

    # --- loading ------------------------------------------------------------------------------

    async def load(self, bundle: LoadedBundle) -> None:
        """Replace this engine's modules and OPA's data document with `bundle`."""
        if self._closed:
            raise PolicyLoadError("engine is closed")
        modules = {
            self._policy_id(path): src for path, src in runtime_modules(bundle.modules).items()
        }
        marker = {"revision": bundle.revision, "digest": bundle.digest}
        # Last, so OPA holds the marker only once everything before it is in place.
        modules[self._policy_id(".revision")] = (
            f"package {MARKER_PACKAGE}\n\n"
            f"revision := {json.dumps(bundle.revision)}\n\ndigest := {json.dumps(bundle.digest)}\n"
        )
        async with self._gate.write():
            # Until the load succeeds, OPA holds a mix of revisions: decisions must deny.
            self._loaded = False
            try:
                async with asyncio.timeout(self._load_timeout):
                    current = await self._owned_policies()
                    await self._put_data(bundle.data)
                    operations: dict[str, Callable[[], Awaitable[str | None]]] = {}
                    for pid in current:
                        if pid not in modules:
                            operations[f"delete {pid}"] = functools.partial(
                                self._delete_policy, pid
                            )
                    for pid, src in modules.items():
                        if current.get(pid) != src:
                            operations[f"put {pid}"] = functools.partial(self._put_policy, pid, src)
                    await self._in_rounds(operations)
            except PolicyLoadError:
                raise
            except TimeoutError as exc:
                raise PolicyLoadError("loading the bundle into OPA timed out") from exc
            except httpx.HTTPError as exc:
                raise PolicyLoadError(f"OPA unreachable: {type(exc).__name__}: {exc}") from exc
            self._revision = bundle.revision
            self._marker = marker
            self._loaded = True

    def _policy_id(self, path: str) -> str:
        return f"{self._prefix}/{path}"

    def _policy_url(self, policy_id: str) -> str:
        return "/v1/policies/" + quote(policy_id, safe="/")

    async def _owned_policies(self) -> dict[str, str]:
        response = await self._client.get("/v1/policies", timeout=self._load_timeout)
        body = _json_body(response, "listing policies")
        result = body.get("result")
        if not isinstance(result, list):
            raise PolicyLoadError("OPA policy listing has no result list")
        owned: dict[str, str] = {}
        for policy in result:
            if isinstance(policy, dict):
                pid, raw = policy.get("id"), policy.get("raw")
                if isinstance(pid, str) and pid.startswith(self._prefix + "/"):
                    owned[pid] = raw if isinstance(raw, str) else ""
        return owned

    async def _put_data(self, data: Any) -> None:
        response = await self._client.put(
            "/v1/data",
            content=json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            timeout=self._load_timeout,
        )
        if response.status_code not in (200, 204):
            raise PolicyLoadError(f"PUT /v1/data: {_error_text(response)}")

    async def _put_policy(self, policy_id: str, source: str) -> str | None:
        response = await self._client.put(
            self._policy_url(policy_id),
            content=source.encode("utf-8"),
            headers={"Content-Type": "text/plain"},
            timeout=self._load_timeout,
        )
        return None if response.status_code == 200 else _error_text(response)

    async def _delete_policy(self, policy_id: str) -> str | None:
        response = await self._client.delete(
            self._policy_url(policy_id), timeout=self._load_timeout
        )
        return None if response.status_code in (200, 404) else _error_text(response)

    @staticmethod
    async def _in_rounds(operations: dict[str, Callable[[], Awaitable[str | None]]]) -> None:
        """Run every operation; retry the failed ones only after some other one succeeded.

        OPA recompiles everything on each change, so a module can only go in once the functions
        it calls exist, and a stale module only out once nothing calls it any more.
        """
        pending = dict(operations)
        while pending:
            errors: dict[str, str] = {}
            for label, operation in pending.items():
                error = await operation()
                if error is not None:
                    errors[label] = error
            if len(errors) == len(pending):
                detail = "; ".join(f"{label}: {err}" for label, err in errors.items())
                raise PolicyLoadError(f"OPA rejected the bundle: {detail}")
            pending = {label: pending[label] for label in errors}


def _decision_from_response(response: httpx.Response) -> object:
    if response.status_code != 200:
        raise PolicyEngineError(f"OPA HTTP {response.status_code}: {_error_text(response)}")
    try:
        body = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolicyEngineError(f"OPA answered invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise PolicyEngineError("OPA answered JSON that is not an object")
    if "result" not in body:
        return UNDEFINED
    return body["result"]


def _json_body(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise PolicyLoadError(f"{what}: {_error_text(response)}")
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolicyLoadError(f"{what}: invalid JSON from OPA") from exc
    if not isinstance(body, dict):
        raise PolicyLoadError(f"{what}: unexpected answer from OPA")
    return body


def _error_text(response: httpx.Response) -> str:
    """OPA's error body (`code`, `message`, `errors[]` with locations) as one line."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}"
    parts = [str(body.get("code", f"HTTP {response.status_code}"))]
    if body.get("message"):
        parts.append(str(body["message"]))
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            loc = error.get("location") or {}
            where = f"{loc.get('file', '')}:{loc.get('row', '')}" if isinstance(loc, dict) else ""
            code = error.get("code", "")
            parts.append(f"{where} {code} {error.get('message', '')}".strip())
    return ": ".join(parts)

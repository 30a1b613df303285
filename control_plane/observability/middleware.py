"""One pure ASGI middleware for what every request leaves behind: its metrics (count and
latency by route template and status), its log line, the token counters of ``/oauth/token``
and the database pool gauges.

It sits just inside ``RequestIdMiddleware`` (so its log line carries the request id) and
outside everything else (so it also sees the 400/413 answers of the sanity middlewares). The
route is the matched route's template (``/v1/agents/{agent_id}``), never the raw path;
a request no route matches is labelled ``unmatched``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.kit.errors import ErrorCode, problem_response
from control_plane.observability import metrics, service
from control_plane.observability.tracing import current_trace_id
from control_plane.state import app_state

log = structlog.get_logger("control_plane.access")

TOKEN_ROUTE = "/oauth/token"  # noqa: S105 - a path, not a secret
UNMATCHED = "unmatched"
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})
CONTENT_TYPE = metrics.CONTENT_TYPE


def route_template(scope: Scope) -> str:
    """The template of the route that answered, or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # HEAD is answered through a copy of the scope (kit.http_methods), and a 405 before
    # routing: match the templates again, which only such requests pay for.
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = candidate.matches({**scope, "method": "GET"})
        if match is not Match.NONE:
            found = getattr(candidate, "path", None)
            if isinstance(found, str):
                return found
    return UNMATCHED


def _principal_kind(scope: Scope) -> str:
    key = scope.get("state", {}).get("principal_key")
    return key.split(":", 1)[0] if isinstance(key, str) else "anonymous"


def _oauth_error(body: bytes) -> str:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return "other"
    # RFC 6749 error codes are a closed set of lower-case words.
    return error if isinstance(error, str) and error.replace("_", "").isalpha() else "other"


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        token_route = scope["path"] == TOKEN_ROUTE and scope["method"] == "POST"
        error_body = bytearray()

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif token_route and status != 200 and message["type"] == "http.response.body":
                # OAuth error bodies are small; only they are read, for their error code.
                error_body.extend(message.get("body", b"")[: 4096 - len(error_body)])
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            metrics.observe_request(scope["method"], route, status, seconds)
            if token_route:
                metrics.observe_token(None if status == 200 else _oauth_error(bytes(error_body)))
            _observe_pool(scope)
            if route not in _QUIET or status >= 400:
                log.info(
                    "request",
                    method=scope["method"],
                    route=route,
                    status=status,
                    latency_ms=round(seconds * 1000, 3),
                    principal_kind=_principal_kind(scope),
                    trace_id=current_trace_id(),
                )


def _observe_pool(scope: Scope) -> None:
    app = scope.get("app")
    if not isinstance(app, Starlette) or getattr(app.state, "context", None) is None:
        return  # the lifespan has not run (or has ended)
    pool: Any = app_state(app).database.engine.pool
    # QueuePool (PostgreSQL) counts its connections; SQLite's pools do not.
    if hasattr(pool, "checkedout") and hasattr(pool, "size"):
        metrics.observe_pool(int(pool.checkedout()), int(pool.size()))


class MetricsPortMiddleware:
    """On the metrics port (``AGENTCTL_METRICS_PORT``, a socket of its own that the API port
    does not share), answer ``GET /metrics`` without authentication and nothing else (404): a
    scraper inside the cluster needs no operator token, and the API stays behind its tokens."""

    def __init__(self, app: ASGIApp, port: int | None) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server") if scope["type"] == "http" else None
        if self.port is None or not server or server[1] != self.port:
            await self.app(scope, receive, send)
            return
        response: Response
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            response = Response(await _render_unauthenticated(scope), media_type=CONTENT_TYPE)
        else:
            response = problem_response(
                status=404,
                code=ErrorCode.not_found,
                title="Not found",
                detail="The metrics port serves GET /metrics only.",
                instance=scope["path"],
            )
        await response(scope, receive, send)


async def _render_unauthenticated(scope: Scope) -> bytes:
    state = app_state(scope["app"])
    try:
        async with state.database.read_sessionmaker() as session:
            return await service.render(session, None)
    except (SQLAlchemyError, OSError) as exc:
        # The process's own samples still help while the database is away.
        log.warning("metrics_snapshot_failed", error_type=type(exc).__name__)
        return metrics.render()

"""HTTP method semantics, enforced at the edge from the OpenAPI document's paths, so they hold for
every route alike (RFC 9110 sections 9.3.2 and 15.5.6).

- HEAD is answered wherever GET is, with GET's status and headers and no body.
- A method the path does not answer gets 405 with ``Allow`` naming every method of the path,
  not only those of the first route that matched it.
- A literal path (``/v1/agents/me``) is its own resource: a method it lacks is 405, never a
  fall-through to a parameterised route (``/v1/agents/{agent_id}``) that would call ``me`` an id.

Paths absent from the document (``/docs``) are left to the router.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.kit.errors import ErrorCode, problem_response

_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
_PARAM = re.compile(r"\{[^/}]+\}")


@dataclass(frozen=True)
class _Path:
    pattern: re.Pattern[str]
    literal: bool
    methods: frozenset[str]


def _table(document: dict[str, Any]) -> list[_Path]:
    table = []
    for template, item in document.get("paths", {}).items():
        methods = {m.upper() for m in item if m.upper() in _ORDER}
        if "GET" in methods:
            methods.add("HEAD")
        parts = _PARAM.split(template)
        regex = "[^/]+".join(re.escape(p) for p in parts)
        table.append(_Path(re.compile(regex), len(parts) == 1, frozenset(methods)))
    return table


def allowed(table: list[_Path], path: str) -> list[str] | None:
    """The methods ``path`` answers (a literal path's own only), or None for an unknown path."""
    matching = [p for p in table if p.pattern.fullmatch(path)]
    if not matching:
        return None
    literal = [p for p in matching if p.literal]
    methods: set[str] = set()
    for p in literal or matching:
        methods |= p.methods
    return [m for m in _ORDER if m in methods]


class MethodMiddleware:
    """HEAD as GET without a body, and 405 with a complete ``Allow`` (see the module)."""

    def __init__(self, app: ASGIApp, openapi: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self._openapi = openapi
        self._table: list[_Path] | None = None
        # path -> allowed(): the table is a linear scan of every path's pattern.
        self._seen: LRUCache[str, list[str] | None] = LRUCache(maxsize=4096)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._table is None:
            self._table = _table(self._openapi())
        path = scope["path"]
        try:
            methods = self._seen[path]
        except KeyError:
            methods = self._seen[path] = allowed(self._table, path)
        method = scope["method"]
        if methods is not None and method not in methods:
            response = problem_response(
                status=405,
                code=ErrorCode.method_not_allowed,
                title="Method not allowed",
                detail=f"{method} is not allowed here; use {', '.join(methods)}.",
                instance=scope["path"],
                headers={"Allow": ", ".join(methods)},
            )
            await response(scope, receive, send)
            return
        if method != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headless(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headless)

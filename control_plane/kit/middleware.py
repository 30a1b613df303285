"""ASGI middleware: request ids on every log line, and the request body size limit.

The size limit is enforced on the declared Content-Length and again while streaming, so a chunked
body cannot slip past it. It is a pure ASGI middleware: nothing is buffered beyond the limit.
"""

from __future__ import annotations

import json
import re
import uuid

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.kit.errors import PROBLEM_CONTENT_TYPE, ErrorCode, problem_body

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class _TooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parser lets it through instead of answering 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body exceeds {limit} bytes.")


async def _send_413(send: Send, path: str, limit: int) -> None:
    body = json.dumps(
        problem_body(
            status=413,
            code=ErrorCode.payload_too_large,
            title="Payload too large",
            detail=f"The request body exceeds {limit} bytes.",
            instance=path,
        )
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class UrlSanityMiddleware:
    """Refuses URLs carrying NUL: no route takes one, and PostgreSQL text cannot hold it, so it
    would otherwise surface as a database error deep inside a query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query: bytes = scope.get("query_string", b"")
            if b"%00" in query.lower() or b"\x00" in query or "\x00" in scope["path"]:
                body = json.dumps(
                    problem_body(
                        status=400,
                        code=ErrorCode.invalid_request,
                        title="Invalid request",
                        detail="NUL characters are not allowed in URLs.",
                        instance=scope["path"].replace("\x00", ""),
                    )
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [
                            (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await _send_413(send, scope["path"], self.max_bytes)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_413(send, scope["path"], self.max_bytes)


class RequestIdMiddleware:
    """Binds a request id (the caller's X-Request-ID if well-formed, else a new one) to the log
    context and echoes it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _REQUEST_ID.match(candidate):
                    request_id = candidate
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Header, Query, Request
from fastapi.responses import StreamingResponse

from control_plane.auth.dependencies import CurrentOperator
from control_plane.auth.principals import OperatorPrincipal
from control_plane.events import service
from control_plane.events.schemas import EventPage
from control_plane.events.types import TYPES
from control_plane.kit.errors import FieldError, ValidationFailed
from control_plane.kit.router import Router
from control_plane.kit.routing import Session
from control_plane.kit.schemas import NAME_PATTERN
from control_plane.state import app_state

router = Router(tag="events", prefix="/v1/events", errors=(401, 403, 422))

STREAM_SECONDS = 300.0  # a stream ends after this; the client resumes with Last-Event-ID
HEARTBEAT_SECONDS = 15.0


def _types(values: list[str]) -> list[str]:
    unknown = [t for t in values if t not in TYPES]
    if unknown:
        raise ValidationFailed(
            f"Unknown event type {unknown[0]!r}.",
            errors=[FieldError(pointer="/query/type", detail="unknown event type")],
        )
    return values


@router.get(
    "",
    response_model=EventPage,
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "example": "id: 0-42\nevent: approval.requested.v1\ndata: {...}\n\n",
                }
            },
            "description": "JSON page, or Server-Sent Events with Accept: text/event-stream.",
        }
    },
)
async def list_events(
    request: Request,
    who: CurrentOperator,
    session: Session,
    after: Annotated[
        str | None, Query(max_length=40, description="Cursor: events after this one.")
    ] = None,
    type: Annotated[list[str], Query(description="Only these types (repeat).")] = [],  # noqa: B006
    domain: Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", max_length=40, description="SSE: resume after this."),
    ] = None,
) -> EventPage | StreamingResponse:
    """Events after a cursor, oldest first (at least once; de-duplicate by id), or a stream."""
    types = _types(type)
    domains = frozenset({domain}) if domain else None
    stream = "text/event-stream" in request.headers.get("accept", "")
    pointer = "/header/Last-Event-ID" if stream and last_event_id else "/query/after"
    start = service.parse_cursor(last_event_id if stream and last_event_id else after, pointer)
    await service.check_cursor(session, start, pointer)
    rows = await service.read(
        session, who, after=start, types=types, domains=domains, limit=limit + 1
    )
    if stream:
        return StreamingResponse(
            _stream(request, who, start, types, domains, limit),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    events = [service.envelope(r) for r in rows[:limit]]
    return EventPage.model_validate(
        {
            "data": events,
            "has_more": len(rows) > limit,
            "next_after": events[-1]["cursor"] if events else after,
        }
    )


async def _stream(
    request: Request,
    who: OperatorPrincipal,
    after: tuple[int, int] | None,
    types: list[str],
    domains: frozenset[str] | None,
    limit: int,
) -> AsyncIterator[bytes]:
    state = app_state(request.app)
    poll = state.settings.events_poll_seconds
    began = last_beat = time.monotonic()
    yield b"retry: 1000\n\n"
    while time.monotonic() - began < STREAM_SECONDS:
        if await request.is_disconnected():
            return
        async with state.database.read_sessionmaker() as session:
            rows = await service.read(
                session, who, after=after, types=types, domains=domains, limit=limit
            )
        for row in rows:
            event = service.envelope(row)
            after = (row.txid, row.seq or 0)
            payload = json.dumps(event, separators=(",", ":"))
            yield f"id: {event['cursor']}\nevent: {row.type}\ndata: {payload}\n\n".encode()
        if len(rows) == limit:
            continue
        now = time.monotonic()
        if now - last_beat > HEARTBEAT_SECONDS:
            last_beat = now
            yield b": keep-alive\n\n"
        await asyncio.sleep(poll)

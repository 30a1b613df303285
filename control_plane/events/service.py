"""Writing events to the outbox (in the caller's transaction) and reading them by cursor.

``emit`` is what every other domain calls when its state changes: the event row is written in
the same transaction as the change, so an event exists if and only if the change committed.
Readers get CloudEvents 1.0 JSON envelopes; the opaque ``cursor`` extension of each event is
where the next read resumes (``after``, or ``Last-Event-ID`` on the SSE stream). Delivery is at
least once: consumers de-duplicate by ``id``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.events import repository
from control_plane.events.types import TYPES
from control_plane.kit.errors import FieldError, ValidationFailed
from control_plane.kit.ids import uuid7
from control_plane.kit.inserts import Row, insert_rows
from control_plane.kit.time import utcnow
from control_plane.models import EventRow

SOURCE = "/agentctl"
_CURSOR = re.compile(r"^([0-9]{1,19})-([0-9]{1,19})$")


async def emit(
    session: AsyncSession,
    event_type: str,
    data: dict[str, Any],
    *,
    domain: str | None = None,
    subject: str | None = None,
) -> uuid.UUID:
    """Write one event of ``event_type`` (one of ``types.TYPES``) in the caller's transaction
    (one INSERT); returns its id. ``data`` must be JSON-serialisable."""
    event_id, row = event_row(session, event_type, data, domain=domain, subject=subject)
    await insert_rows(session, [row])
    return event_id


def event_row(
    session: AsyncSession,
    event_type: str,
    data: dict[str, Any],
    *,
    domain: str | None = None,
    subject: str | None = None,
) -> tuple[uuid.UUID, Row]:
    """``emit``'s event as a row for ``kit.inserts.insert_rows``, for a caller that inserts it
    together with its own rows (one statement on PostgreSQL), and its id. Raises ValueError for
    an unknown type."""
    if event_type not in TYPES:  # a programming error, not bad input
        raise ValueError(f"unknown event type {event_type}")
    event_id = uuid7()
    values = {
        "id": event_id,
        "type": event_type,
        "source": f"{SOURCE}/domains/{domain}" if domain else SOURCE,
        "subject": subject,
        "domain": domain,
        "time": utcnow(),
        "data": json.dumps(data, default=str, separators=(",", ":")),
    }
    return event_id, repository.row(session, values)


def cursor_of(row: EventRow) -> str:
    return f"{row.txid}-{row.seq}"


def parse_cursor(value: str | None, pointer: str) -> tuple[int, int] | None:
    """``None`` for no cursor; 422 for a cursor this server never handed out."""
    if value is None or value == "":
        return None
    match = _CURSOR.match(value)
    if match is None:
        raise ValidationFailed(
            "The cursor is not one this server handed out.",
            errors=[FieldError(pointer=pointer, detail="expected a cursor such as 0-42")],
        )
    return int(match.group(1)), int(match.group(2))


async def check_cursor(session: AsyncSession, cursor: tuple[int, int] | None, pointer: str) -> None:
    """422 for a cursor beyond the newest event stored: this server never handed it out (or
    its events are gone, a restore), and reading after it would skip every event until the
    log caught up with it, silently."""
    if cursor is None:
        return
    newest = await repository.head(session)
    if newest is None or cursor > newest:
        raise ValidationFailed(
            "The cursor is beyond the newest event; read again without one.",
            errors=[FieldError(pointer=pointer, detail="beyond the newest event")],
        )


def envelope(row: EventRow) -> dict[str, Any]:
    """The CloudEvents 1.0 JSON form of ``row``, with the ``cursor`` extension attribute."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(row.id),
        "source": row.source,
        "type": row.type,
        "time": row.time.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "cursor": cursor_of(row),
        "data": json.loads(row.data),
    }
    if row.subject is not None:
        event["subject"] = row.subject
    return event


async def read(
    session: AsyncSession,
    who: OperatorPrincipal | None,
    *,
    after: tuple[int, int] | None,
    types: Sequence[str] = (),
    domains: frozenset[str] | None = None,
    limit: int,
) -> Sequence[EventRow]:
    """Up to ``limit`` events after the cursor, oldest first, in the caller's domains (events
    without a domain are seen by global roles only). ``who`` None is the server itself."""
    visible = domains
    if who is not None:
        who.require(Capability.events_read)
        mine = who.visible_domains()
        if mine is not None:
            visible = mine if visible is None else visible & mine
    return await repository.page(session, after=after, domains=visible, types=types, limit=limit)

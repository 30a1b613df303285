"""All SQL for events: the outbox insert and the ordered, visibility-safe read.

Ordering. On PostgreSQL a row carries the id of the transaction that wrote it (``txid``) and the
read returns only rows of transactions older than the oldest one still running
(``pg_snapshot_xmin``), ordered by ``(txid, seq)``: every such row is final, and every row still
to come has a larger ``txid``, so a cursor never passes an event that commits later. On SQLite
one writer at a time commits in ``seq`` order (``txid`` is 0).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.kit.inserts import Row, Sql, table_of
from control_plane.models import EventRow, Webhook, WebhookDelivery


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# The inserting transaction's id: a row's place in the outbox's order (module docstring).
_TXID = Sql("pg_current_xact_id()::text::bigint")


def row(session: AsyncSession, values: dict[str, Any]) -> Row:
    """One event as a row for ``kit.inserts.insert_rows`` (to insert it in the same statement
    as others); ``values``: its ``id``, ``type``, ``source``, ``subject``, ``domain``, ``time``
    and ``data`` (``seq`` and ``txid`` come from the database; on SQLite ``txid`` is 0)."""
    txid: Any = _TXID if _is_postgres(session) else 0
    return Row(table_of(EventRow), {**values, "txid": txid})


async def head(session: AsyncSession) -> tuple[int, int] | None:
    """The cursor of the newest event stored, committed or not yet visible (None: no event)."""
    stmt = (
        select(EventRow.txid, EventRow.seq)
        .order_by(col(EventRow.txid).desc(), col(EventRow.seq).desc())
        .limit(1)
    )
    row = (await session.exec(stmt)).first()
    return None if row is None else (int(row[0]), int(row[1] or 0))


async def page(
    session: AsyncSession,
    *,
    after: tuple[int, int] | None,
    domains: frozenset[str] | None,
    types: Sequence[str],
    limit: int,
) -> Sequence[EventRow]:
    stmt = select(EventRow).order_by(col(EventRow.txid), col(EventRow.seq)).limit(limit)
    if _is_postgres(session):
        stmt = stmt.where(
            col(EventRow.txid) < text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        )
    if after is not None:
        txid, seq = after
        stmt = stmt.where(
            or_(
                col(EventRow.txid) > txid,
                and_(col(EventRow.txid) == txid, col(EventRow.seq) > seq),
            )
        )
    if domains is not None:
        stmt = stmt.where(col(EventRow.domain).in_(sorted(domains)))
    if types:
        stmt = stmt.where(col(EventRow.type).in_(list(types)))
    return (await session.exec(stmt)).all()


# --- webhooks ------------------------------------------------------------------------------------


async def add_webhook(session: AsyncSession, webhook: Webhook) -> None:
    session.add(webhook)
    await session.flush()


async def get_webhook(session: AsyncSession, webhook_id: uuid.UUID) -> Webhook | None:
    found = await session.get(Webhook, webhook_id, populate_existing=True)
    return found if found is not None and found.deleted_at is None else None


async def list_webhooks(
    session: AsyncSession, *, visible: frozenset[str] | None, after: uuid.UUID | None, limit: int
) -> Sequence[Webhook]:
    stmt = (
        select(Webhook)
        .where(col(Webhook.deleted_at).is_(None))
        .order_by(col(Webhook.id))
        .limit(limit + 1)
    )
    if visible is not None:
        stmt = stmt.where(col(Webhook.domain).in_(sorted(visible)))
    if after is not None:
        stmt = stmt.where(col(Webhook.id) > after)
    return (await session.exec(stmt)).all()


async def any_webhook(session: AsyncSession) -> bool:
    stmt = select(Webhook.id).where(col(Webhook.deleted_at).is_(None)).limit(1)
    return (await session.exec(stmt)).first() is not None


async def active_webhooks(session: AsyncSession) -> Sequence[Webhook]:
    stmt = select(Webhook).where(col(Webhook.deleted_at).is_(None)).order_by(col(Webhook.id))
    if _is_postgres(session):
        # One replica queues a webhook's deliveries at a time; the others skip it this round.
        stmt = stmt.with_for_update(skip_locked=True)
    return (await session.exec(stmt.execution_options(populate_existing=True))).all()


async def add_deliveries(session: AsyncSession, rows: Sequence[WebhookDelivery]) -> None:
    session.add_all(rows)
    await session.flush()


async def due_deliveries(
    session: AsyncSession, now: datetime, limit: int
) -> Sequence[WebhookDelivery]:
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.state == "pending", col(WebhookDelivery.next_attempt_at) <= now)
        .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
        .limit(limit)
    )
    if _is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return (await session.exec(stmt.execution_options(populate_existing=True))).all()


async def get_delivery(
    session: AsyncSession, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery | None:
    found = await session.get(WebhookDelivery, delivery_id, populate_existing=True)
    return found if found is not None and found.webhook_id == webhook_id else None


async def list_deliveries(
    session: AsyncSession,
    webhook_id: uuid.UUID,
    *,
    state: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[WebhookDelivery]:
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(col(WebhookDelivery.id))
        .limit(limit + 1)
    )
    if state is not None:
        stmt = stmt.where(WebhookDelivery.state == state)
    if after is not None:
        stmt = stmt.where(col(WebhookDelivery.id) > after)
    return (await session.exec(stmt)).all()

"""All SQL for events: the outbox insert and the ordered, visibility-safe read.

Ordering. On PostgreSQL a row carries the id of the transaction that wrote it (``txid``) and the
read returns only rows of transactions older than the oldest one still running
(``pg_snapshot_xmin``), ordered by ``(txid, seq)``: every such row is final, and every row still
to come has a larger ``txid``, so a cursor never passes an event that commits later. On SQLite
one writer at a time commits in ``seq`` order (``txid`` is 0).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, insert, literal_column, or_, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import EventRow


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def add(session: AsyncSession, row: EventRow) -> None:
    values = row.model_dump(exclude={"seq", "txid"})
    values["txid"] = (
        literal_column("pg_current_xact_id()::text::bigint") if _is_postgres(session) else 0
    )
    await session.exec(insert(EventRow).values(**values))


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

"""All SQL of the kit: the stored answers of ``Idempotency-Key`` requests and the counters of
failed authentications (``kit.ratelimit``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models.idempotency import IdempotencyRecord
from control_plane.models.ratelimit import AuthFailureCount


async def find_idempotency_record(
    session: AsyncSession, principal: str, key: str
) -> IdempotencyRecord | None:
    stmt = select(IdempotencyRecord).where(
        IdempotencyRecord.principal == principal, IdempotencyRecord.key == key
    )
    return (await session.exec(stmt)).first()


async def count_idempotency_records(
    session: AsyncSession, principal: str, *, at_most: int, since: datetime | None = None
) -> int:
    """How many of ``principal``'s records there are (created at or after ``since``, if given),
    counting no further than ``at_most`` (so the cost is bounded by the cap, not by the table;
    without ``since`` the primary key's index alone answers)."""
    stmt = select(col(IdempotencyRecord.key)).where(col(IdempotencyRecord.principal) == principal)
    if since is not None:
        stmt = stmt.where(col(IdempotencyRecord.created_at) >= since)
    live = stmt.limit(at_most).subquery()
    found = (await session.exec(select(func.count()).select_from(live))).one()
    return int(found)


async def oldest_idempotency_record(
    session: AsyncSession, principal: str, since: datetime
) -> datetime | None:
    """When ``principal``'s oldest record created at or after ``since`` was created."""
    stmt = select(func.min(IdempotencyRecord.created_at)).where(
        col(IdempotencyRecord.principal) == principal,
        col(IdempotencyRecord.created_at) >= since,
    )
    found: datetime | None = (await session.exec(stmt)).one()
    return found


async def prune_idempotency_records(
    session: AsyncSession, principal: str, older_than: datetime
) -> None:
    await session.exec(
        delete(IdempotencyRecord).where(
            col(IdempotencyRecord.principal) == principal,
            col(IdempotencyRecord.created_at) < older_than,
        )
    )


async def auth_failure_counts(
    session: AsyncSession, keys: Sequence[str], window_start: int
) -> dict[str, int]:
    """The failure counts of ``keys`` in the window starting at ``window_start`` (absent: 0)."""
    stmt = select(col(AuthFailureCount.key), col(AuthFailureCount.count)).where(
        col(AuthFailureCount.key).in_(keys), col(AuthFailureCount.window_start) == window_start
    )
    return {str(key): int(count) for key, count in (await session.exec(stmt)).all()}


async def count_auth_failure(session: AsyncSession, keys: Sequence[str], window_start: int) -> None:
    """Add one failure to each of ``keys`` in the window, in one atomic statement."""
    table = AuthFailureCount.__table__  # type: ignore[attr-defined]
    rows = [{"key": key, "window_start": window_start, "count": 1} for key in keys]
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    stmt = insert.values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["key", "window_start"], set_={"count": table.c.count + 1}
    )
    await session.exec(stmt)


async def prune_auth_failures(session: AsyncSession, before: int) -> int:
    """Delete the failure counts of windows that started before ``before``."""
    result = await session.exec(
        delete(AuthFailureCount).where(col(AuthFailureCount.window_start) < before)
    )
    return int(result.rowcount or 0)

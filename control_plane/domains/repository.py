"""All SQL for domains."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import Domain


async def get(session: AsyncSession, name: str) -> Domain | None:
    return await session.get(Domain, name)


async def list_page(
    session: AsyncSession, *, visible: frozenset[str] | None, after: str | None, limit: int
) -> Sequence[Domain]:
    stmt = select(Domain).order_by(col(Domain.name)).limit(limit + 1)
    if visible is not None:
        stmt = stmt.where(col(Domain.name).in_(sorted(visible)))
    if after is not None:
        stmt = stmt.where(col(Domain.name) > after)
    return (await session.exec(stmt)).all()


async def add(session: AsyncSession, domain: Domain) -> None:
    session.add(domain)
    await session.flush()


async def set_suspended(session: AsyncSession, name: str, at: datetime | None) -> bool:
    """Suspend (``at``) or resume (None) the domain; False when it already was so."""
    stmt = update(Domain).where(col(Domain.name) == name)
    if at is None:
        stmt = stmt.where(col(Domain.suspended_at).is_not(None))
    else:
        stmt = stmt.where(col(Domain.suspended_at).is_(None))
    result = await session.exec(stmt.values(suspended_at=at))
    return bool(result.rowcount)

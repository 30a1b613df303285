"""All SQL for console sessions (rows keyed by the SHA-256 of the session id)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import ConsoleSession


async def add(session: AsyncSession, row: ConsoleSession) -> None:
    session.add(row)
    await session.flush()


async def find_live(session: AsyncSession, id_hash: str, now: datetime) -> ConsoleSession | None:
    stmt = select(ConsoleSession).where(
        ConsoleSession.id_hash == id_hash,
        col(ConsoleSession.revoked_at).is_(None),
        col(ConsoleSession.expires_at) > now,
    )
    return (await session.exec(stmt)).first()


async def revoke(session: AsyncSession, id_hash: str, now: datetime) -> None:
    stmt = (
        update(ConsoleSession)
        .where(col(ConsoleSession.id_hash) == id_hash, col(ConsoleSession.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    await session.exec(stmt)
    await session.flush()

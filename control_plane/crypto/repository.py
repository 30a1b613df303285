"""All SQL for the control plane's signing keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import SigningKeyRow

# --- signing keys -----------------------------------------------------------------------------


async def active_signing_keys(session: AsyncSession) -> Sequence[SigningKeyRow]:
    stmt = select(SigningKeyRow).where(col(SigningKeyRow.retired_at).is_(None))
    return (await session.exec(stmt)).all()


async def published_signing_keys(session: AsyncSession, now: datetime) -> Sequence[SigningKeyRow]:
    stmt = select(SigningKeyRow).where(
        or_(col(SigningKeyRow.not_after).is_(None), col(SigningKeyRow.not_after) > now)
    )
    return (await session.exec(stmt)).all()


async def prune_signing_keys(session: AsyncSession, now: datetime) -> None:
    await session.exec(delete(SigningKeyRow).where(col(SigningKeyRow.not_after) < now))

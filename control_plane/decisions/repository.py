"""All SQL for decisions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import Decision


async def add(session: AsyncSession, decision: Decision) -> None:
    session.add(decision)
    await session.flush()


async def list_page(
    session: AsyncSession,
    *,
    visible: frozenset[str] | None,
    agent_id: uuid.UUID | None,
    effect: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Decision]:
    stmt = select(Decision).order_by(col(Decision.id)).limit(limit + 1)
    if visible is not None:
        stmt = stmt.where(col(Decision.domain).in_(sorted(visible)))
    if agent_id is not None:
        stmt = stmt.where(Decision.agent_id == agent_id)
    if effect is not None:
        stmt = stmt.where(Decision.effect == effect)
    if action is not None:
        stmt = stmt.where(Decision.action == action)
    if since is not None:
        stmt = stmt.where(col(Decision.created_at) >= since)
    if until is not None:
        stmt = stmt.where(col(Decision.created_at) < until)
    if after is not None:
        stmt = stmt.where(col(Decision.id) > after)
    return (await session.exec(stmt)).all()

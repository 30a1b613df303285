"""All SQL for approvals. Resolving and consuming are single conditional UPDATEs, so two
concurrent attempts cannot both succeed (the row lock orders them; the loser's WHERE fails)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import Approval


async def add(session: AsyncSession, approval: Approval) -> None:
    session.add(approval)
    await session.flush()


async def get(session: AsyncSession, approval_id: uuid.UUID) -> Approval | None:
    return await session.get(Approval, approval_id, populate_existing=True)


async def list_page(
    session: AsyncSession,
    *,
    visible: frozenset[str] | None,
    state: str | None,
    domain: str | None,
    agent_id: uuid.UUID | None,
    now: datetime,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Approval]:
    stmt = select(Approval).order_by(col(Approval.id)).limit(limit + 1)
    if visible is not None:
        stmt = stmt.where(col(Approval.domain).in_(sorted(visible)))
    if domain is not None:
        stmt = stmt.where(Approval.domain == domain)
    if agent_id is not None:
        stmt = stmt.where(Approval.agent_id == agent_id)
    if state == "expired":
        stmt = stmt.where(
            col(Approval.state).in_(["pending", "approved"]), col(Approval.expires_at) <= now
        )
    elif state in ("pending", "approved"):
        stmt = stmt.where(Approval.state == state, col(Approval.expires_at) > now)
    elif state is not None:
        stmt = stmt.where(Approval.state == state)
    if after is not None:
        stmt = stmt.where(col(Approval.id) > after)
    return (await session.exec(stmt)).all()


async def resolve(
    session: AsyncSession, approval_id: uuid.UUID, now: datetime, values: dict[str, Any]
) -> bool:
    """Set ``values`` on a pending, unexpired approval; False when it was not that."""
    result = await session.exec(
        update(Approval)
        .where(
            col(Approval.id) == approval_id,
            col(Approval.state) == "pending",
            col(Approval.expires_at) > now,
        )
        .values(**values)
    )
    return bool(result.rowcount)


async def consume(
    session: AsyncSession,
    approval_id: uuid.UUID,
    input_hash: str,
    decision_id: uuid.UUID,
    now: datetime,
) -> bool:
    """Mark an approved, unexpired approval of this exact input used; False if it was not."""
    result = await session.exec(
        update(Approval)
        .where(
            col(Approval.id) == approval_id,
            col(Approval.state) == "approved",
            col(Approval.input_hash) == input_hash,
            col(Approval.expires_at) > now,
        )
        .values(state="used", used_at=now, used_by_decision_id=decision_id)
    )
    return bool(result.rowcount)

"""All SQL for operators."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import Operator


async def get(session: AsyncSession, operator_id: uuid.UUID) -> Operator | None:
    return await session.get(Operator, operator_id)


async def get_bootstrap(session: AsyncSession) -> Operator | None:
    stmt = select(Operator).where(col(Operator.is_bootstrap).is_(True))
    return (await session.exec(stmt)).first()


async def list_page(
    session: AsyncSession, *, after: uuid.UUID | None, limit: int
) -> Sequence[Operator]:
    stmt = select(Operator).order_by(col(Operator.id)).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(col(Operator.id) > after)
    return (await session.exec(stmt)).all()


async def add(session: AsyncSession, operator: Operator) -> None:
    session.add(operator)
    await session.flush()


async def find_active_by_token_hash(session: AsyncSession, token_hash: str) -> Operator | None:
    stmt = select(Operator).where(
        Operator.token_hash == token_hash, col(Operator.revoked_at).is_(None)
    )
    return (await session.exec(stmt)).first()

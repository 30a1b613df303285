"""All SQL of the kit: the stored answers of ``Idempotency-Key`` requests."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models.idempotency import IdempotencyRecord


async def find_idempotency_record(
    session: AsyncSession, principal: str, key: str
) -> IdempotencyRecord | None:
    stmt = select(IdempotencyRecord).where(
        IdempotencyRecord.principal == principal, IdempotencyRecord.key == key
    )
    return (await session.exec(stmt)).first()


async def prune_idempotency_records(
    session: AsyncSession, principal: str, older_than: datetime
) -> None:
    await session.exec(
        delete(IdempotencyRecord).where(
            col(IdempotencyRecord.principal) == principal,
            col(IdempotencyRecord.created_at) < older_than,
        )
    )

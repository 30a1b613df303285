"""All SQL of federation: enforcement points and the bundle signing key."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import BundleSigningKey, EnforcementPoint


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def add(session: AsyncSession, point: EnforcementPoint) -> None:
    session.add(point)
    await session.flush()


async def get(session: AsyncSession, point_id: uuid.UUID) -> EnforcementPoint | None:
    return await session.get(EnforcementPoint, point_id)


async def find_by_name(session: AsyncSession, domain: str, name: str) -> EnforcementPoint | None:
    stmt = select(EnforcementPoint).where(
        EnforcementPoint.domain == domain, EnforcementPoint.name == name
    )
    return (await session.exec(stmt)).first()


async def list_page(
    session: AsyncSession, domain: str, *, after: uuid.UUID | None, limit: int
) -> Sequence[EnforcementPoint]:
    stmt = (
        select(EnforcementPoint)
        .where(EnforcementPoint.domain == domain)
        .order_by(col(EnforcementPoint.id))
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(col(EnforcementPoint.id) > after)
    return (await session.exec(stmt)).all()


async def record_contact(
    session: AsyncSession,
    point_id: uuid.UUID,
    at: datetime,
    *,
    revision: str | None,
    error: str | None,
    set_error: bool,
) -> None:
    values: dict[str, object] = {"last_contact_at": at}
    if revision is not None:
        values["bundle_revision"] = revision
    if set_error:
        values["last_error"] = error
    await session.exec(
        update(EnforcementPoint).where(col(EnforcementPoint.id) == point_id).values(**values)
    )


# --- the bundle signing key -------------------------------------------------------------------


async def signing_keys(session: AsyncSession) -> Sequence[BundleSigningKey]:
    stmt = select(BundleSigningKey).order_by(col(BundleSigningKey.created_at))
    return (await session.exec(stmt)).all()


async def lock_signing_keys(session: AsyncSession) -> None:
    if _is_postgres(session):
        key = func.hashtextextended("agentctl/federation/keys", 0)
        await session.exec(select(func.pg_advisory_xact_lock(key)))


async def add_signing_key(session: AsyncSession, row: BundleSigningKey) -> None:
    session.add(row)
    await session.flush()

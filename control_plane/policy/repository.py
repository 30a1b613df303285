"""All SQL for policy bundles and revisions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import PolicyBundle, PolicyRevision


async def get_bundle(session: AsyncSession, name: str) -> PolicyBundle | None:
    return await session.get(PolicyBundle, name)


async def active_revision_number(session: AsyncSession, name: str) -> int | None:
    stmt = select(PolicyBundle.active_revision).where(PolicyBundle.name == name)
    return (await session.exec(stmt)).first()


async def list_bundles(
    session: AsyncSession, *, after: str | None, limit: int
) -> Sequence[PolicyBundle]:
    stmt = select(PolicyBundle).order_by(col(PolicyBundle.name)).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(col(PolicyBundle.name) > after)
    return (await session.exec(stmt)).all()


async def get_revision(session: AsyncSession, bundle: str, number: int) -> PolicyRevision | None:
    stmt = select(PolicyRevision).where(
        PolicyRevision.bundle == bundle, PolicyRevision.revision == number
    )
    return (await session.exec(stmt)).first()


async def list_revisions(
    session: AsyncSession, bundle: str, *, after: int | None, limit: int
) -> Sequence[PolicyRevision]:
    stmt = (
        select(PolicyRevision)
        .where(PolicyRevision.bundle == bundle)
        .order_by(col(PolicyRevision.revision).desc())
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(col(PolicyRevision.revision) < after)
    return (await session.exec(stmt)).all()


async def stored_content(
    session: AsyncSession, revision_id: uuid.UUID
) -> tuple[dict[str, Any], dict[str, Any], bytes | None]:
    """(modules, data, wasm) of a revision as the database holds them (read back, not cached)."""
    stmt = select(PolicyRevision.modules, PolicyRevision.data, PolicyRevision.wasm).where(
        PolicyRevision.id == revision_id
    )
    modules, data, wasm = (await session.exec(stmt)).one()
    return dict(modules), dict(data), (bytes(wasm) if wasm is not None else None)


async def next_revision_number(session: AsyncSession, bundle: str) -> int:
    stmt = select(func.max(PolicyRevision.revision)).where(PolicyRevision.bundle == bundle)
    current = (await session.exec(stmt)).first()
    return (current or 0) + 1


async def add(session: AsyncSession, row: PolicyBundle | PolicyRevision) -> None:
    session.add(row)
    await session.flush()

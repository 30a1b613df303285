"""All SQL for credentials (the OAuth2 clients of agents)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import Credential

# --- credentials ------------------------------------------------------------------------------


async def add_credential(session: AsyncSession, credential: Credential) -> None:
    session.add(credential)
    await session.flush()


async def get_credential(session: AsyncSession, client_id: uuid.UUID) -> Credential | None:
    return await session.get(Credential, client_id)


async def list_credentials(
    session: AsyncSession, agent_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
) -> Sequence[Credential]:
    stmt = (
        select(Credential)
        .where(Credential.agent_id == agent_id)
        .order_by(col(Credential.id))
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(col(Credential.id) > after)
    return (await session.exec(stmt)).all()


async def point_credentials(session: AsyncSession, point_id: uuid.UUID) -> Sequence[Credential]:
    stmt = (
        select(Credential)
        .where(Credential.enforcement_point_id == point_id)
        .order_by(col(Credential.id))
    )
    return (await session.exec(stmt)).all()

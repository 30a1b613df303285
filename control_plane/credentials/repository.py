"""All SQL for credentials (the OAuth2 clients of agents)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import Agent, Credential, RevokedToken

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


async def revoked_in_domain(session: AsyncSession, domain: str) -> tuple[list[str], list[str]]:
    """(jti of every revoked token kept, id of every revoked credential) of ``domain``'s agents,
    sorted."""
    tokens = (
        select(RevokedToken.jti)
        .join(Credential, col(Credential.id) == col(RevokedToken.client_id))
        .join(Agent, col(Agent.id) == col(Credential.agent_id))
        .where(Agent.domain == domain)
        .order_by(col(RevokedToken.jti))
    )
    clients = (
        select(Credential.id)
        .join(Agent, col(Agent.id) == col(Credential.agent_id))
        .where(Agent.domain == domain, col(Credential.revoked_at).is_not(None))
        .order_by(col(Credential.id))
    )
    jtis = list((await session.exec(tokens)).all())
    ids = [str(cid) for cid in (await session.exec(clients)).all()]
    return jtis, ids


async def revocations_fingerprint(session: AsyncSession, domain: str) -> tuple[Any, ...]:
    """A cheap value that changes whenever ``revoked_in_domain`` does: rows are only added
    (a revocation) or, for tokens, deleted once expired (the pruner). One round trip (it runs
    with every bundle pull and long-poll check)."""

    def tokens(value: Any) -> Any:
        return (
            select(value)
            .select_from(RevokedToken)
            .join(Credential, col(Credential.id) == col(RevokedToken.client_id))
            .join(Agent, col(Agent.id) == col(Credential.agent_id))
            .where(Agent.domain == domain)
            .scalar_subquery()
        )

    def clients(value: Any) -> Any:
        return (
            select(value)
            .select_from(Credential)
            .join(Agent, col(Agent.id) == col(Credential.agent_id))
            .where(Agent.domain == domain, col(Credential.revoked_at).is_not(None))
            .scalar_subquery()
        )

    stmt = select(
        tokens(func.count()),
        tokens(func.max(col(RevokedToken.revoked_at))),
        clients(func.count()),
        clients(func.max(col(Credential.revoked_at))),
    )
    return tuple((await session.exec(stmt)).one())

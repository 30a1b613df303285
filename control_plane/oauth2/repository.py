"""All SQL of the OAuth2 server: used client assertions, revoked tokens, and the per-request
authentication state of an agent's token."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.kit.time import aware
from control_plane.models import (
    Agent,
    AgentVersion,
    Credential,
    Domain,
    RevokedToken,
    UsedAssertion,
)
from control_plane.oauth2.auth_state import AuthState

# --- one-time assertions and revocation -------------------------------------------------------


async def record_assertion(
    session: AsyncSession, client_id: uuid.UUID, jti: str, expires_at: datetime
) -> bool:
    """Record a client assertion's jti; False when it was used before (on any replica)."""
    try:
        async with session.begin_nested():
            session.add(UsedAssertion(client_id=client_id, jti=jti, expires_at=expires_at))
    except IntegrityError:
        return False
    return True


async def prune_assertions(session: AsyncSession, now: datetime) -> int:
    """Delete used-assertion rows past their expiry; returns how many."""
    result = await session.exec(delete(UsedAssertion).where(col(UsedAssertion.expires_at) < now))
    return int(result.rowcount or 0)


async def revoke_token(
    session: AsyncSession, jti: str, client_id: uuid.UUID, expires_at: datetime
) -> None:
    if await session.get(RevokedToken, jti) is None:
        try:
            async with session.begin_nested():
                session.add(RevokedToken(jti=jti, client_id=client_id, expires_at=expires_at))
        except IntegrityError:
            pass  # revoked concurrently: the outcome is the same


async def prune_revoked_tokens(session: AsyncSession, now: datetime) -> int:
    """Delete revoked-token rows whose token has expired anyway; returns how many."""
    result = await session.exec(delete(RevokedToken).where(col(RevokedToken.expires_at) < now))
    return int(result.rowcount or 0)


async def auth_state(
    session: AsyncSession, client_id: uuid.UUID, agent_id: uuid.UUID, jti: str
) -> AuthState | None:
    domain_suspended = (
        select(col(Domain.suspended_at).is_not(None))
        .where(col(Domain.name) == col(Agent.domain))
        .scalar_subquery()
    )
    # Five columns: more than sqlmodel's select() is typed for, hence Any.
    stmt: Any = (
        select(Agent, Credential, AgentVersion, RevokedToken)
        .add_columns(domain_suspended)
        .join(Credential, col(Credential.agent_id) == col(Agent.id))
        .outerjoin(AgentVersion, col(AgentVersion.id) == col(Credential.version_id))
        .outerjoin(RevokedToken, col(RevokedToken.jti) == jti)
        .where(col(Credential.id) == client_id, col(Agent.id) == agent_id)
    )
    row = (await session.exec(stmt)).first()
    if row is None:
        return None
    agent, credential, version, revoked, suspended = row
    return AuthState(
        agent=agent,
        credential_revoked=credential.revoked_at is not None,
        credential_expires_at=aware(credential.expires_at) if credential.expires_at else None,
        bound_version_state=version.state if version is not None else None,
        token_revoked=revoked is not None,
        domain_suspended=bool(suspended),
    )

"""All SQL of the OAuth2 server: used client assertions, revoked tokens, and the per-request
authentication state of an agent's token."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, exists
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.kit.prepared import Prepared
from control_plane.models import (
    Agent,
    AgentVersion,
    Credential,
    RevokedToken,
    UsedAssertion,
)
from control_plane.oauth2.auth_state import (
    AGENT_COLUMNS,
    AuthState,
    agent_from,
    credential_of_agent,
    domain_suspended,
)

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


def _auth_state_statement() -> Any:
    """Built once (bound parameters), so no call pays for building, aliasing or cache keys."""
    bound = aliased(AgentVersion)
    return (
        sa_select(
            *AGENT_COLUMNS,
            col(Credential.revoked_at),
            col(Credential.expires_at),
            col(bound.state),
            exists().where(col(RevokedToken.jti) == bindparam("jti")),
            domain_suspended(),
        )
        .select_from(Agent)
        .join(Credential, credential_of_agent())
        .outerjoin(bound, col(bound.id) == col(Credential.version_id))
        .where(col(Agent.id) == bindparam("agent_id"))
    )


_AUTH_STATE = Prepared(_auth_state_statement())


async def auth_state(
    session: AsyncSession, client_id: uuid.UUID, agent_id: uuid.UUID, jti: str
) -> AuthState | None:
    """What authentication re-checks under a valid token (``AuthState``), or None when the
    credential ``client_id`` is not the agent's (or either is gone). One statement, compiled
    once (``kit.prepared``): every agent-authenticated request runs it (the ORM's select of
    four entities cost about a millisecond more per request)."""
    rows = await _AUTH_STATE.rows(
        session, {"agent_id": agent_id, "client_id": client_id, "jti": jti}
    )
    if not rows:
        return None
    row = rows[0]
    return AuthState.from_columns(agent_from(row), *row[len(AGENT_COLUMNS) :])

"""All SQL for decisions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import (
    Agent,
    AgentVersion,
    Credential,
    Decision,
    DecisionReplay,
    PolicyBundle,
)


async def get(session: AsyncSession, decision_id: uuid.UUID) -> Decision | None:
    return await session.get(Decision, decision_id)


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


async def vouched_state(
    session: AsyncSession, agent_id: uuid.UUID, client_id: uuid.UUID, bundle: str
) -> tuple[Agent | None, AgentVersion | None, Credential | None, int | None]:
    """The rows a decision was decided on: agent, its active version, the credential, and the
    bundle's active revision number."""
    agent = await session.get(Agent, agent_id, populate_existing=True)
    version = (
        await session.exec(
            select(AgentVersion).where(
                AgentVersion.agent_id == agent_id, AgentVersion.state == "active"
            )
        )
    ).first()
    credential = await session.get(Credential, client_id, populate_existing=True)
    revision = (
        await session.exec(select(PolicyBundle.active_revision).where(PolicyBundle.name == bundle))
    ).first()
    return agent, version, credential, revision


async def add_replay(session: AsyncSession, replay: DecisionReplay) -> None:
    session.add(replay)
    await session.flush()


async def list_replays(
    session: AsyncSession,
    decision_id: uuid.UUID,
    *,
    visible: frozenset[str] | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[DecisionReplay]:
    stmt = (
        select(DecisionReplay)
        .where(DecisionReplay.decision_id == decision_id)
        .order_by(col(DecisionReplay.id))
        .limit(limit + 1)
    )
    if visible is not None:
        stmt = stmt.where(col(DecisionReplay.domain).in_(sorted(visible)))
    if after is not None:
        stmt = stmt.where(col(DecisionReplay.id) > after)
    return (await session.exec(stmt)).all()

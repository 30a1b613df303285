"""All SQL for agents and agent versions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlmodel import col, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.kit.time import utcnow
from control_plane.models import Agent, AgentVersion


async def get(session: AsyncSession, agent_id: uuid.UUID) -> Agent | None:
    return await session.get(Agent, agent_id)


async def find_by_name(session: AsyncSession, domain: str, name: str) -> Agent | None:
    stmt = select(Agent).where(Agent.domain == domain, Agent.name == name)
    return (await session.exec(stmt)).first()


async def list_page(
    session: AsyncSession,
    *,
    visible: frozenset[str] | None,
    domain: str | None,
    status: str | None,
    labels: dict[str, str],
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Agent]:
    stmt = select(Agent).order_by(col(Agent.id)).limit(limit + 1)
    if visible is not None:
        stmt = stmt.where(col(Agent.domain).in_(sorted(visible)))
    if domain is not None:
        stmt = stmt.where(Agent.domain == domain)
    if status is not None:
        stmt = stmt.where(Agent.status == status)
    for key, value in labels.items():
        stmt = stmt.where(col(Agent.labels)[key].as_string() == value)
    if after is not None:
        stmt = stmt.where(col(Agent.id) > after)
    return (await session.exec(stmt)).all()


async def ids_in_domain(session: AsyncSession, domain: str, status: str) -> list[uuid.UUID]:
    stmt = select(Agent.id).where(Agent.domain == domain, Agent.status == status)
    return list((await session.exec(stmt)).all())


async def add(session: AsyncSession, row: Agent | AgentVersion) -> None:
    session.add(row)
    await session.flush()


async def update_if_revision(
    session: AsyncSession, agent_id: uuid.UUID, expected_revision: int, values: dict[str, Any]
) -> bool:
    """Apply ``values`` only if the row still has ``expected_revision``; bump the revision.

    The check and the write are one statement, so of N writers holding the same ETag exactly one
    matches; PostgreSQL re-evaluates the WHERE clause after waiting for a concurrent writer.
    """
    stmt = (
        update(Agent)
        .where(col(Agent.id) == agent_id, col(Agent.revision) == expected_revision)
        .values(**values, revision=expected_revision + 1, updated_at=utcnow())
    )
    result = await session.exec(stmt)
    return result.rowcount == 1


async def get_version(
    session: AsyncSession, agent_id: uuid.UUID, version_id: uuid.UUID
) -> AgentVersion | None:
    row = await session.get(AgentVersion, version_id)
    return row if row is not None and row.agent_id == agent_id else None


async def find_version(
    session: AsyncSession, agent_id: uuid.UUID, version: str
) -> AgentVersion | None:
    stmt = select(AgentVersion).where(
        AgentVersion.agent_id == agent_id, AgentVersion.version == version
    )
    return (await session.exec(stmt)).first()


async def active_version(session: AsyncSession, agent_id: uuid.UUID) -> AgentVersion | None:
    stmt = select(AgentVersion).where(
        AgentVersion.agent_id == agent_id, AgentVersion.state == "active"
    )
    return (await session.exec(stmt)).first()


async def list_versions(
    session: AsyncSession, agent_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
) -> Sequence[AgentVersion]:
    stmt = (
        select(AgentVersion)
        .where(AgentVersion.agent_id == agent_id)
        .order_by(col(AgentVersion.id))
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(col(AgentVersion.id) > after)
    return (await session.exec(stmt)).all()


async def set_version_state(
    session: AsyncSession,
    version_id: uuid.UUID,
    *,
    from_states: Sequence[str],
    values: dict[str, Any],
) -> bool:
    stmt = (
        update(AgentVersion)
        .where(col(AgentVersion.id) == version_id, col(AgentVersion.state).in_(from_states))
        .values(**values, updated_at=utcnow())
    )
    return (await session.exec(stmt)).rowcount == 1


async def demote_active_versions(session: AsyncSession, agent_id: uuid.UUID) -> None:
    stmt = (
        update(AgentVersion)
        .where(col(AgentVersion.agent_id) == agent_id, col(AgentVersion.state) == "active")
        .values(state="approved", updated_at=utcnow())
    )
    await session.exec(stmt)


async def refresh(session: AsyncSession, row: Agent | AgentVersion) -> None:
    await session.refresh(row)


async def domain_agents(
    session: AsyncSession, domain: str
) -> Sequence[tuple[Agent, AgentVersion | None]]:
    """Every agent of ``domain`` with its active version (None without one), by id."""
    stmt = (
        select(Agent, AgentVersion)
        .join(
            AgentVersion,
            (col(AgentVersion.agent_id) == col(Agent.id)) & (col(AgentVersion.state) == "active"),
            isouter=True,
        )
        .where(Agent.domain == domain)
        .order_by(col(Agent.id))
    )
    return [(agent, version) for agent, version in (await session.exec(stmt)).all()]


async def domain_fingerprint(session: AsyncSession, domain: str) -> tuple[Any, ...]:
    """A cheap value that changes whenever an agent of ``domain`` or one of its versions does:
    agents' count and revision sum (every update bumps a revision), versions' count and newest
    update."""
    agents_row = (
        await session.exec(
            select(func.count(), func.sum(col(Agent.revision))).where(Agent.domain == domain)
        )
    ).one()
    versions_row = (
        await session.exec(
            select(func.count(), func.max(col(AgentVersion.updated_at)))
            .select_from(AgentVersion)
            .join(Agent, col(Agent.id) == col(AgentVersion.agent_id))
            .where(Agent.domain == domain)
        )
    ).one()
    return (*tuple(agents_row), *tuple(versions_row))

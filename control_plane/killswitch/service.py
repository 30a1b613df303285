"""Suspending and resuming agents and domains, with their events and audit records.

Enforcement is where every agent call is already checked: the token endpoint refuses an agent
that is suspended or whose domain is (``oauth2.service``), and every protected call re-reads the
agent's status and its domain's ``suspended_at`` at most ``auth_state_ttl_seconds`` (at most
1 s) ago on every replica (``oauth2.agent_auth``), so existing tokens stop working everywhere
within that bound and remote decisions are refused. The suspension lives in the registry rows
(``agents.status``, ``domains.suspended_at``), which is what edge bundles are built from.

This module sits beside ``agents`` and ``domains`` rather than inside them because the audit
domain already reads both (an import cycle otherwise).
"""

from __future__ import annotations

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.agents import service as agents
from control_plane.audit import service as audit
from control_plane.auth.principals import OperatorPrincipal
from control_plane.domains import service as domains
from control_plane.events import service as events
from control_plane.models import Agent, Domain

_AGENT_EVENTS = {"suspend": "agent.suspended.v1", "resume": "agent.resumed.v1"}


async def transition_agent(
    session: AsyncSession,
    ctx: audit.AuditContext,
    who: OperatorPrincipal,
    agent_id: uuid.UUID,
    action: str,
    if_match: str | None,
) -> Agent:
    """``agents.transition`` (suspend, resume, retire) plus, for suspend and resume, its event
    and a ``kill_switch`` audit record (flush only)."""
    agent = await agents.transition(session, who, agent_id, action, if_match)
    event_type = _AGENT_EVENTS.get(action)
    if event_type is not None:
        await events.emit(
            session,
            event_type,
            {"agent_id": str(agent.id), "domain": agent.domain, "by": who.name, "reason": "agent"},
            domain=agent.domain,
            subject=str(agent.id),
        )
        await audit.record_control(
            session,
            ctx,
            kind="kill_switch",
            domain=agent.domain,
            agent_id=agent.id,
            action=f"agent.{action}",
            actor=who.key,
            details={"agent_id": str(agent.id), "by": who.name},
        )
    return agent


async def set_domain(
    session: AsyncSession,
    ctx: audit.AuditContext,
    who: OperatorPrincipal,
    name: str,
    suspend: bool,
) -> Domain:
    """Turn a domain's kill switch on or off (flush only): one row changes, every agent of the
    domain is refused (or allowed again, unless suspended on its own). Emits
    ``domain.suspended.v1`` / ``domain.resumed.v1`` and ``agent.suspended.v1`` /
    ``agent.resumed.v1`` (reason ``domain``) for each active agent, and one audit record."""
    domain = await domains.set_suspended(session, who, name, suspend)
    verb = "suspended" if suspend else "resumed"
    ids = await agents.active_ids_in_domain(session, name)
    await events.emit(
        session,
        f"domain.{verb}.v1",
        {"domain": name, "by": who.name, "agents": len(ids)},
        domain=name,
        subject=name,
    )
    for agent_id in ids:
        await events.emit(
            session,
            f"agent.{verb}.v1",
            {"agent_id": str(agent_id), "domain": name, "by": who.name, "reason": "domain"},
            domain=name,
            subject=str(agent_id),
        )
    await audit.record_control(
        session,
        ctx,
        kind="kill_switch",
        domain=name,
        agent_id=None,
        action=f"domain.{'suspend' if suspend else 'resume'}",
        actor=who.key,
        details={"domain": name, "by": who.name, "agents": [str(i) for i in ids]},
    )
    return domain

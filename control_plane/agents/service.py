"""Registry rules: who may see and change which agent, lifecycles of agents and versions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.agents import repository
from control_plane.agents.schemas import (
    AgentCreate,
    AgentStatus,
    AgentUpdate,
    VersionCreate,
    VersionState,
)
from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.domains import service as domains
from control_plane.events import service as events
from control_plane.kit.errors import (
    AlreadyExists,
    Conflict,
    FieldError,
    Forbidden,
    InvalidStateTransition,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from control_plane.kit.etag import require_if_match
from control_plane.kit.time import utcnow
from control_plane.models import Agent, AgentVersion

# action -> (statuses it applies to, status it leads to); retired is final.
_AGENT_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "suspend": (frozenset({AgentStatus.active}), AgentStatus.suspended),
    "resume": (frozenset({AgentStatus.suspended}), AgentStatus.active),
    "retire": (frozenset({AgentStatus.active, AgentStatus.suspended}), AgentStatus.retired),
}


async def _visible_agent(
    session: AsyncSession, who: OperatorPrincipal, agent_id: uuid.UUID
) -> Agent:
    return who.visible(await repository.get(session, agent_id), what="Agent")


# --- for other domains (no operator involved: token issuance, agent authentication) ----------


async def find(session: AsyncSession, agent_id: uuid.UUID) -> Agent | None:
    """The agent, whoever asks; callers apply their own rules."""
    return await repository.get(session, agent_id)


async def version_by_id(
    session: AsyncSession, agent_id: uuid.UUID, version_id: uuid.UUID
) -> AgentVersion | None:
    """One version of the agent, whoever asks; callers apply their own rules."""
    return await repository.get_version(session, agent_id, version_id)


async def active_version(session: AsyncSession, agent_id: uuid.UUID) -> AgentVersion | None:
    return await repository.active_version(session, agent_id)


async def active_ids_in_domain(session: AsyncSession, domain: str) -> list[uuid.UUID]:
    """Ids of the domain's active agents, whoever asks (the kill switch announces them)."""
    return await repository.ids_in_domain(session, domain, AgentStatus.active)


async def usable_version(
    session: AsyncSession, agent_id: uuid.UUID, version: str
) -> AgentVersion | None:
    """The version named ``version`` if it is approved or active (credentials bind to those)."""
    found = await repository.find_version(session, agent_id, version)
    if found is None or found.state not in (VersionState.approved, VersionState.active):
        return None
    return found


async def writable(session: AsyncSession, who: OperatorPrincipal, agent_id: uuid.UUID) -> Agent:
    """The agent, when ``who`` may change it (registry:write, in their domains)."""
    return await _writable_agent(session, who, agent_id)


async def readable(session: AsyncSession, who: OperatorPrincipal, agent_id: uuid.UUID) -> Agent:
    return await get(session, who, agent_id)


async def get(session: AsyncSession, who: OperatorPrincipal, agent_id: uuid.UUID) -> Agent:
    who.require(Capability.registry_read)
    return await _visible_agent(session, who, agent_id)


async def _writable_agent(
    session: AsyncSession, who: OperatorPrincipal, agent_id: uuid.UUID
) -> Agent:
    who.require(Capability.registry_write)
    return await _visible_agent(session, who, agent_id)


async def create(session: AsyncSession, who: OperatorPrincipal, body: AgentCreate) -> Agent:
    who.require(Capability.registry_write)
    # An unknown domain and a domain outside the caller's scope answer the same way.
    if not who.sees_domain(body.domain) or not await domains.exists(session, body.domain):
        raise ValidationFailed(
            "The domain does not exist.",
            errors=[FieldError(pointer="/body/domain", detail="unknown domain")],
        )
    if await repository.find_by_name(session, body.domain, body.name) is not None:
        raise AlreadyExists(f"An agent named '{body.name}' already exists in '{body.domain}'.")
    agent = Agent(**body.model_dump())
    try:
        await repository.add(session, agent)
    except IntegrityError as exc:  # lost a race with a concurrent create of the same name
        raise AlreadyExists(
            f"An agent named '{body.name}' already exists in '{body.domain}'."
        ) from exc
    await events.emit(
        session,
        "agent.registered.v1",
        {
            "agent_id": str(agent.id),
            "domain": agent.domain,
            "name": agent.name,
            "owner": agent.owner,
        },
        domain=agent.domain,
        subject=str(agent.id),
    )
    return agent


async def list_agents(
    session: AsyncSession,
    who: OperatorPrincipal,
    *,
    domain: str | None,
    status: AgentStatus | None,
    labels: dict[str, str],
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Agent]:
    who.require(Capability.registry_read)
    return await repository.list_page(
        session,
        visible=who.visible_domains(),
        domain=domain,
        status=status.value if status else None,
        labels=labels,
        after=after,
        limit=limit,
    )


async def _conditional_update(
    session: AsyncSession, agent: Agent, if_match: str | None, values: dict[str, Any]
) -> Agent:
    held = require_if_match(if_match, agent.revision)
    if not await repository.update_if_revision(session, agent.id, held, values):
        raise PreconditionFailed(
            "The agent changed since you read it (ETag mismatch); read it again and retry."
        )
    await repository.refresh(session, agent)
    return agent


async def update(
    session: AsyncSession,
    who: OperatorPrincipal,
    agent_id: uuid.UUID,
    body: AgentUpdate,
    if_match: str | None,
) -> Agent:
    agent = await _writable_agent(session, who, agent_id)
    if agent.status == AgentStatus.retired:
        raise InvalidStateTransition("A retired agent cannot be changed.")
    return await _conditional_update(session, agent, if_match, body.changes())


async def transition(
    session: AsyncSession,
    who: OperatorPrincipal,
    agent_id: uuid.UUID,
    action: str,
    if_match: str | None,
) -> Agent:
    agent = await _writable_agent(session, who, agent_id)
    from_states, target = _AGENT_TRANSITIONS[action]
    if agent.status not in from_states:
        raise InvalidStateTransition(f"Cannot {action} an agent that is {agent.status}.")
    # Lifecycle calls are conditional too, but If-Match is optional for them: the transition
    # itself is checked against the state read in this transaction.
    return await _conditional_update(
        session, agent, if_match if if_match and if_match.strip() else "*", {"status": target}
    )


# --- versions ---------------------------------------------------------------------------------


async def register_version(
    session: AsyncSession, who: OperatorPrincipal, agent_id: uuid.UUID, body: VersionCreate
) -> AgentVersion:
    agent = await _writable_agent(session, who, agent_id)
    if agent.status == AgentStatus.retired:
        raise InvalidStateTransition("A retired agent cannot get new versions.")
    if await repository.find_version(session, agent.id, body.version) is not None:
        raise AlreadyExists(f"Version {body.version} is already registered for this agent.")
    version = AgentVersion(agent_id=agent.id, registered_by=who.key, **body.model_dump())
    try:
        await repository.add(session, version)
    except IntegrityError as exc:
        raise AlreadyExists(f"Version {body.version} is already registered.") from exc
    return version


async def _version_reader_agent(
    session: AsyncSession, who: OperatorPrincipal, agent_id: uuid.UUID
) -> Agent:
    # Approvers read the versions they are to approve, nothing else of the registry.
    who.require(Capability.registry_read, Capability.versions_approve)
    return await _visible_agent(session, who, agent_id)


async def get_version(
    session: AsyncSession, who: OperatorPrincipal, agent_id: uuid.UUID, version_id: uuid.UUID
) -> AgentVersion:
    await _version_reader_agent(session, who, agent_id)
    version = await repository.get_version(session, agent_id, version_id)
    if version is None:
        raise NotFound("Version not found.")
    return version


async def list_versions(
    session: AsyncSession,
    who: OperatorPrincipal,
    agent_id: uuid.UUID,
    *,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[AgentVersion]:
    await _version_reader_agent(session, who, agent_id)
    return await repository.list_versions(session, agent_id, after=after, limit=limit)


_VERSION_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "approve": (frozenset({VersionState.registered}), VersionState.approved),
    "activate": (frozenset({VersionState.approved}), VersionState.active),
    "deprecate": (
        frozenset({VersionState.registered, VersionState.approved, VersionState.active}),
        VersionState.deprecated,
    ),
}


async def transition_version(
    session: AsyncSession,
    who: OperatorPrincipal,
    agent_id: uuid.UUID,
    version_id: uuid.UUID,
    action: str,
    *,
    approval_separation: bool = False,
) -> AgentVersion:
    """Apply ``action`` (approve, activate, deprecate) to the version.

    Approving takes ``versions:approve`` (platform and domain admins, approvers); the other
    actions ``registry:write``. With ``approval_separation``
    (``AGENTCTL_VERSION_APPROVAL_SEPARATION``), the operator that registered a version cannot
    approve it (403); a version registered before registrants were recorded has none, so any
    other operator may approve it."""
    if action == "approve":
        who.require(Capability.versions_approve)
        agent = await _visible_agent(session, who, agent_id)
    else:
        agent = await _writable_agent(session, who, agent_id)
    version = await repository.get_version(session, agent_id, version_id)
    if version is None:
        raise NotFound("Version not found.")
    if action == "approve" and approval_separation and version.registered_by == who.key:
        raise Forbidden(
            "Separation of duties: the operator that registered a version cannot approve it; "
            "another operator with versions:approve (an approver) must."
        )
    from_states, target = _VERSION_TRANSITIONS[action]
    if version.state not in from_states:
        hint = " Only an approved version can be activated." if action == "activate" else ""
        raise InvalidStateTransition(f"Cannot {action} a version that is {version.state}.{hint}")
    if action == "activate" and agent.status == AgentStatus.retired:
        raise InvalidStateTransition("A retired agent cannot activate a version.")
    now = utcnow()
    values: dict[str, Any] = {"state": target}
    if action == "approve":
        values.update(approved_at=now, approved_by=who.key)
    if action == "activate":
        values["activated_at"] = now
        # The previously active version steps back to approved, so it can be re-activated
        # (rollback). The partial unique index guarantees one active version per agent.
        await repository.demote_active_versions(session, agent.id)
    try:
        changed = await repository.set_version_state(
            session, version.id, from_states=sorted(from_states), values=values
        )
    except IntegrityError as exc:
        raise Conflict("Another version was activated concurrently; retry.") from exc
    if not changed:
        raise Conflict("The version changed concurrently; read it again and retry.")
    await repository.refresh(session, version)
    if action == "activate":
        await events.emit(
            session,
            "agent.version.activated.v1",
            {
                "agent_id": str(agent.id),
                "domain": agent.domain,
                "version_id": str(version.id),
                "version": version.version,
            },
            domain=agent.domain,
            subject=str(agent.id),
        )
    return version


async def domain_agents(
    session: AsyncSession, domain: str
) -> Sequence[tuple[Agent, AgentVersion | None]]:
    """Every agent of ``domain`` with its active version (for federation bundles)."""
    return await repository.domain_agents(session, domain)


async def domain_fingerprint(session: AsyncSession, domain: str) -> tuple[Any, ...]:
    """Changes whenever an agent of ``domain`` or one of its versions changes."""
    return await repository.domain_fingerprint(session, domain)

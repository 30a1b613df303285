"""Approval rules: binding to the exact action, who may decide, single use.

An approval is created by a ``require_approval`` decision and bound to ``input_hash``: the
SHA-256 of the RFC 8785 encoding of ``{agent, version, action, resource, context}`` (agent and
version by id; the context without ``time``, which differs on every retry). The agent retries
its decision with ``approval_id``; the decision is an allow (reason ``approved``) only when the
approval is approved, unexpired, unused and the retry's hash is the same, and the approval is
consumed by one conditional UPDATE in the decision's transaction, so of concurrent retries
exactly one wins. Otherwise the decision is a deny with the reason (``APPROVAL_REASONS``).

Who decides: an operator with the ``approver`` role in the approval's domain, or a
platform_admin (``approvals:decide``); never the agent's owner (separation of duties: the
approver's name must differ from the agent's ``owner``). Other roles get 403, approvers of
other domains 404 (the approval's existence is not disclosed).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Final

import rfc8785
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.agents import service as agents
from control_plane.approvals import repository
from control_plane.approvals.schemas import ApprovalState
from control_plane.audit import service as audit
from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.events import service as events
from control_plane.kit.errors import Forbidden, InvalidStateTransition
from control_plane.kit.inserts import Row, table_of
from control_plane.kit.time import aware, utcnow
from control_plane.models import Approval

_APPROVALS = table_of(Approval)

DEFAULT_TTL_SECONDS: Final = 3600
MAX_TTL_SECONDS: Final = 7 * 24 * 3600
APPROVAL_REASONS: Final = frozenset(
    {
        "approval_pending",
        "approval_denied",
        "approval_expired",
        "approval_used",
        "approval_mismatch",
    }
)


def input_hash(
    agent_id: uuid.UUID,
    version_id: uuid.UUID | None,
    action: str,
    resource: Mapping[str, Any],
    context: Mapping[str, Any],
) -> str:
    """SHA-256 hex of the exact action an approval is bound to (see the module docstring).
    Raises ``rfc8785.CanonicalizationError`` for values RFC 8785 cannot encode."""
    document = {
        "agent": str(agent_id),
        "version": str(version_id) if version_id else None,
        "action": action,
        "resource": dict(resource),
        "context": {k: v for k, v in context.items() if k != "time"},
    }
    return hashlib.sha256(rfc8785.dumps(document)).hexdigest()


def _ttl(obligation: Mapping[str, Any] | None) -> int:
    raw = obligation.get("ttl_seconds") if obligation else None
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return min(raw, MAX_TTL_SECONDS)
    return DEFAULT_TTL_SECONDS


def approval_obligation(obligations: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((o for o in obligations if o.get("type") == "approval"), None)


def state_of(approval: Approval) -> ApprovalState:
    if approval.state in ("pending", "approved") and aware(approval.expires_at) <= utcnow():
        return ApprovalState.expired
    return ApprovalState(approval.state)


# --- the decision path ---------------------------------------------------------------------------


async def request(
    session: AsyncSession,
    ctx: audit.AuditContext,
    *,
    domain: str,
    agent_id: uuid.UUID,
    client_id: uuid.UUID | None,
    decision_id: uuid.UUID,
    bound_to: str,
    action: str,
    resource: dict[str, Any],
    reasons: Sequence[str],
    obligations: Sequence[Mapping[str, Any]],
) -> Approval:
    """Create the approval a ``require_approval`` decision asks for (flush only), with its
    ``approval.requested.v1`` event and audit record. ``resource`` is stored as given (pass the
    redacted one)."""
    obligation = approval_obligation(obligations)
    role = obligation.get("approver_role") if obligation else None
    approval = Approval(
        domain=domain,
        agent_id=agent_id,
        client_id=client_id,
        decision_id=decision_id,
        input_hash=bound_to,
        action=action,
        resource=resource,
        reasons=list(reasons),
        approver_role=role if isinstance(role, str) else None,
        expires_at=utcnow() + timedelta(seconds=_ttl(obligation)),
    )
    _, event = events.event_row(
        session,
        "approval.requested.v1",
        {
            "approval_id": str(approval.id),
            "agent_id": str(agent_id),
            "domain": domain,
            "decision_id": str(decision_id),
            "action": action,
            "reasons": list(reasons),
            "expires_at": approval.expires_at.isoformat(),
        },
        domain=domain,
        subject=str(approval.id),
    )
    # The approval, its event and its audit record: one statement on PostgreSQL.
    await audit.record_control(
        session,
        ctx,
        kind="approval",
        domain=domain,
        agent_id=agent_id,
        action="approval.requested",
        actor=f"agent:{agent_id}",
        details={"approval_id": str(approval.id), "expires_at": approval.expires_at.isoformat()},
        decision_id=decision_id,
        also=[Row(_APPROVALS, approval.model_dump()), event],
    )
    return approval


async def check(
    session: AsyncSession, approval_id: uuid.UUID, agent_id: uuid.UUID, bound_to: str
) -> str | None:
    """None when the approval may be used for this input, else the deny reason. An unknown
    approval or another agent's is ``approval_mismatch`` (nothing disclosed)."""
    approval = await repository.get(session, approval_id)
    if approval is None or approval.agent_id != agent_id or approval.input_hash != bound_to:
        return "approval_mismatch"
    state = state_of(approval)
    if state is ApprovalState.approved:
        return None
    return f"approval_{state.value}"


async def consume(
    session: AsyncSession,
    ctx: audit.AuditContext,
    approval_id: uuid.UUID,
    bound_to: str,
    *,
    domain: str,
    agent_id: uuid.UUID,
    decision_id: uuid.UUID,
) -> str | None:
    """Use the approval for ``decision_id`` (flush only): None when this call consumed it, else
    the deny reason (a concurrent retry that lost gets ``approval_used``)."""
    if await repository.consume(session, approval_id, bound_to, decision_id, utcnow()):
        await audit.record_control(
            session,
            ctx,
            kind="approval",
            domain=domain,
            agent_id=agent_id,
            action="approval.used",
            actor=f"agent:{agent_id}",
            details={"approval_id": str(approval_id)},
            decision_id=decision_id,
        )
        return None
    return await check(session, approval_id, agent_id, bound_to) or "approval_used"


# --- operators -----------------------------------------------------------------------------------


async def get(session: AsyncSession, who: OperatorPrincipal, approval_id: uuid.UUID) -> Approval:
    who.require(Capability.approvals_read)
    return who.visible(await repository.get(session, approval_id), what="Approval")


async def list_approvals(
    session: AsyncSession,
    who: OperatorPrincipal,
    *,
    state: ApprovalState | None,
    domain: str | None,
    agent_id: uuid.UUID | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Approval]:
    who.require(Capability.approvals_read)
    return await repository.list_page(
        session,
        visible=who.visible_domains(),
        state=state.value if state else None,
        domain=domain,
        agent_id=agent_id,
        now=utcnow(),
        after=after,
        limit=limit,
    )


async def resolve(
    session: AsyncSession,
    ctx: audit.AuditContext,
    who: OperatorPrincipal,
    approval_id: uuid.UUID,
    verdict: ApprovalState,
    comment: str | None,
) -> Approval:
    """Approve or deny (flush only), with its ``approval.resolved.v1`` event and audit record.

    Raises ``Forbidden`` (403) for roles that cannot decide and for the agent's owner,
    ``NotFound`` (404) outside the caller's domains, ``InvalidStateTransition`` (409) when the
    approval is no longer pending (resolved, used or expired).
    """
    who.require(Capability.approvals_decide)
    approval = who.visible(await repository.get(session, approval_id), what="Approval")
    agent = await agents.find(session, approval.agent_id)
    if agent is not None and who.is_named(agent.owner):
        raise Forbidden("Separation of duties: the agent's owner cannot decide its approvals.")
    state = state_of(approval)
    if state is not ApprovalState.pending:
        raise InvalidStateTransition(
            f"The approval is {state.value}; only a pending one can be decided."
        )
    now = utcnow()
    values = {
        "state": verdict.value,
        "resolved_at": now,
        "resolved_by": who.name,
        "comment": comment,
    }
    if not await repository.resolve(session, approval.id, now, values):
        raise InvalidStateTransition("The approval was decided concurrently or has expired.")
    approval = who.visible(await repository.get(session, approval_id), what="Approval")
    await events.emit(
        session,
        "approval.resolved.v1",
        {
            "approval_id": str(approval.id),
            "agent_id": str(approval.agent_id),
            "domain": approval.domain,
            "verdict": verdict.value,
            "by": who.name,
        },
        domain=approval.domain,
        subject=str(approval.id),
    )
    await audit.record_control(
        session,
        ctx,
        kind="approval",
        domain=approval.domain,
        agent_id=approval.agent_id,
        action=f"approval.{verdict.value}",
        actor=who.key,
        details={"approval_id": str(approval.id), "by": who.name, "comment": comment},
        decision_id=approval.decision_id,
    )
    return approval

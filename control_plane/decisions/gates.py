"""The governance steps of a decision: budgets before and after policy, approvals after it.

``prepare`` runs before the engine: from the budgets that the decision's state statement read,
it puts what is left in ``input.vouched.budget``. ``judge`` runs after the engine, in the
decision's transaction, and turns the policy's answer into the final one:

- a retry with ``approval_id``: a policy deny stands; otherwise the approval must be approved,
  unexpired, unused and bound to this exact input, and is consumed here (an allow with reason
  ``approved``), else a deny with ``approval_pending|denied|expired|used|mismatch``;
- an allow takes its share of every budget window, or is a deny ``budget_exceeded``;
- ``require_approval`` creates the approval (``announce``, once the decision row exists).

``announce`` writes what follows from the final answer once the decision row exists: the
approval request (with its event and audit record) and the budget refusal (its
``budget.exceeded.v1`` event and audit record). A deny's ``decision.denied.v1`` event is a row
(``denied_event``) inserted with the decision itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.approvals import service as approvals
from control_plane.audit import service as audit
from control_plane.budgets import service as budgets
from control_plane.budgets.rows import BudgetRow
from control_plane.decisions.repository import RecordedDecision
from control_plane.decisions.schemas import DecisionRequest
from control_plane.events import service as events
from control_plane.kit.inserts import Row
from control_plane.oauth2.agent_auth import AgentPrincipal
from control_plane.policy.engines import Effect, EngineResult


@dataclass
class Verdict:
    effect: str
    reasons: list[str]
    approval_id: uuid.UUID | None = None
    retry_after: int | None = None
    exceeded: budgets.Exceeded | None = None
    bound_to: str | None = None  # the input hash, when an approval is to be requested
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def allow(self) -> bool:
        return self.effect == Effect.allow


def prepare(input_doc: dict[str, Any], rows: Sequence[BudgetRow]) -> budgets.Snapshot | None:
    """The budgets that apply and what is left of them (into ``input.vouched.budget``), from
    the rows the decision's state statement read: no statement of its own."""
    snap = budgets.snapshot(rows) if rows else None
    if snap is not None:
        input_doc["vouched"]["budget"] = snap.vouched()
    return snap


def _bound_to(principal: AgentPrincipal, version: Any, body: DecisionRequest, resource: Any) -> str:
    try:
        return approvals.input_hash(
            principal.agent.id,
            version.id if version is not None else None,
            body.action,
            resource,
            body.context,
        )
    except rfc8785.CanonicalizationError:
        # Not encodable (e.g. a float RFC 8785 refuses): such an input cannot be bound, so it
        # matches no approval (a sentinel no hash can equal).
        return "unbindable"


async def judge(
    session: AsyncSession,
    ctx: audit.AuditContext,
    principal: AgentPrincipal,
    version: Any,
    body: DecisionRequest,
    input_doc: dict[str, Any],
    result: EngineResult,
    snap: budgets.Snapshot | None,
    decision_id: uuid.UUID,
) -> Verdict:
    verdict = Verdict(result.effect.value, list(result.reasons))
    if result.failure is not None or result.effect is Effect.deny:
        if body.approval_id is not None:
            verdict.approval_id = body.approval_id
        return verdict
    agent = principal.agent
    if body.approval_id is not None:
        bound = _bound_to(principal, version, body, input_doc["resource"])
        verdict.approval_id = body.approval_id
        problem = await approvals.check(session, body.approval_id, agent.id, bound)
        if problem is None and snap is not None:
            verdict.exceeded = await budgets.consume(session, snap, input_doc)
            if verdict.exceeded is not None:
                return _exceeded(verdict)
        if problem is None:
            problem = await approvals.consume(
                session,
                ctx,
                body.approval_id,
                bound,
                domain=agent.domain,
                agent_id=agent.id,
                decision_id=decision_id,
            )
            if problem is not None and snap is not None:
                await budgets.refund(session, snap, input_doc)
        if problem is not None:
            return Verdict(Effect.deny.value, [problem], approval_id=body.approval_id)
        return Verdict(Effect.allow.value, ["approved"], approval_id=body.approval_id)
    if result.effect is Effect.allow and snap is not None:
        verdict.exceeded = await budgets.consume(session, snap, input_doc)
        if verdict.exceeded is not None:
            return _exceeded(verdict)
    if result.effect is Effect.require_approval:
        verdict.bound_to = _bound_to(principal, version, body, input_doc["resource"])
    return verdict


def _exceeded(verdict: Verdict) -> Verdict:
    assert verdict.exceeded is not None
    return Verdict(
        Effect.deny.value,
        ["budget_exceeded"],
        approval_id=verdict.approval_id,
        retry_after=verdict.exceeded.retry_after,
        exceeded=verdict.exceeded,
    )


async def announce(
    session: AsyncSession, ctx: audit.AuditContext, decision: RecordedDecision, verdict: Verdict
) -> None:
    if verdict.bound_to is not None:
        approval = await approvals.request(
            session,
            ctx,
            domain=decision.domain,
            agent_id=decision.agent_id,
            client_id=decision.client_id,
            decision_id=decision.id,
            bound_to=verdict.bound_to,
            action=decision.action,
            resource=decision.resource,
            reasons=decision.reasons,
            obligations=decision.obligations,
        )
        verdict.approval_id = approval.id
    if verdict.exceeded is not None:
        await budgets.refused(
            session,
            ctx,
            verdict.exceeded,
            domain=decision.domain,
            agent_id=decision.agent_id,
            decision_id=decision.id,
        )


def denied_event(
    session: AsyncSession,
    principal: AgentPrincipal,
    decision_id: uuid.UUID,
    action: str,
    effect: str,
    reasons: Sequence[str],
) -> list[Row]:
    """The ``decision.denied.v1`` event of a final deny, as a row to insert with the decision
    (``decisions.service.record_decision``: one statement on PostgreSQL); none for another
    effect."""
    if effect != Effect.deny:
        return []
    agent = principal.agent
    _, row = events.event_row(
        session,
        "decision.denied.v1",
        {
            "decision_id": str(decision_id),
            "agent_id": str(agent.id),
            "domain": agent.domain,
            "action": action,
            "reasons": list(reasons),
        },
        domain=agent.domain,
        subject=str(decision_id),
    )
    return [row]

"""Deciding on an agent's action and recording the decision.

The trust boundary is in the input's shape. ``agent`` (identity, domain, status, autonomy level
and version, from the verified token and the registry) and ``vouched`` (the control plane's
clock) are what the control plane vouches for; ``resource`` and ``context`` are the agent's
claims, passed exactly as sent. The shipped policy grants only on vouched facts and policy data;
a claim may only make a decision stricter (see policies/agents/authz.rego).

The decision row is written in the same transaction that produces the answer, so an answer the
agent receives is always on record; what it keeps of the resource is redacted by the policy's
path patterns (``control_plane.kit.redaction``) before it is stored.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.agents import service as agents
from control_plane.audit import service as audit
from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.decisions import gates, repository
from control_plane.decisions.schemas import DecisionRequest, DecisionResult
from control_plane.kit.errors import FieldError, ValidationFailed
from control_plane.kit.ids import uuid7
from control_plane.kit.redaction import obligation_patterns, redact
from control_plane.kit.time import utcnow
from control_plane.models import Decision, DecisionReplay
from control_plane.oauth2.agent_auth import AgentPrincipal
from control_plane.policy.engines import EngineResult, InputLimits, InvalidInputError, encode_input
from control_plane.policy.runtime import PolicyRuntime


def _agent_document(principal: AgentPrincipal, version: Any) -> dict[str, Any]:
    agent = principal.agent
    return {
        "id": str(agent.id),
        "name": agent.name,
        "domain": agent.domain,
        "status": agent.status,
        "autonomy_level": agent.autonomy_level,
        "labels": dict(agent.labels),
        "version": (
            {"id": str(version.id), "version": version.version, "state": version.state}
            if version is not None
            else None
        ),
    }


def _stored_resource(resource: dict[str, Any], result: EngineResult, key: bytes) -> dict[str, Any]:
    """What the record keeps of the resource: redacted by the path patterns of the policy's
    ``redact`` obligations (at any depth, any letter case; values become HMAC markers), or, when
    the decision failed closed (no obligations to go by), only its type and id."""
    if result.failure is not None:
        return {"type": resource.get("type"), "id": resource.get("id")}
    redacted, _ = redact({"resource": resource}, obligation_patterns(result.obligations), key)
    kept: dict[str, Any] = redacted["resource"]
    return kept


def decision_input(
    principal: AgentPrincipal, version: Any, body: DecisionRequest
) -> dict[str, Any]:
    """The policy input: ``agent`` and ``vouched`` from the control plane, ``action``,
    ``resource`` and ``context`` as the agent sent them. ``vouched.budget`` (what is left of
    each budget window) is added by ``gates.prepare`` when a budget applies."""
    return {
        "agent": _agent_document(principal, version),
        "action": body.action,
        "resource": body.resource.model_dump(),
        "context": dict(body.context),
        "vouched": {"time": utcnow().isoformat(timespec="seconds").replace("+00:00", "Z")},
    }


async def decide(
    session: AsyncSession,
    runtime: PolicyRuntime,
    principal: AgentPrincipal,
    body: DecisionRequest,
    limits: InputLimits,
    redaction_key: bytes,
    audit_context: audit.AuditContext,
) -> DecisionResult:
    """Decide on ``body`` for the calling agent and record the decision (flush only).

    Raises ``ValidationFailed`` (422) when the input exceeds ``limits``. An engine failure is a
    recorded deny, never an exception.
    """
    started = time.perf_counter()
    version = await agents.active_version(session, principal.agent.id)
    input_doc = decision_input(principal, version, body)
    snap = await gates.prepare(session, principal, input_doc)
    try:
        encoded = encode_input(input_doc, limits)
    except InvalidInputError as exc:
        raise ValidationFailed(
            f"The decision input is too large or too deep: {exc}.",
            errors=[FieldError(pointer="/body", detail=str(exc))],
        ) from None
    result = await runtime.decide(session, input_doc)
    decision_id = uuid7()
    verdict = await gates.judge(
        session, audit_context, principal, version, body, input_doc, result, snap, decision_id
    )
    decision = Decision(
        id=decision_id,
        agent_id=principal.agent.id,
        domain=principal.agent.domain,
        client_id=principal.client_id,
        version_id=version.id if version is not None else None,
        version=version.version if version is not None else None,
        action=body.action,
        resource=_stored_resource(input_doc["resource"], result, redaction_key),
        input_digest="sha256:" + hashlib.sha256(encoded.encode()).hexdigest(),
        effect=verdict.effect,
        allow=verdict.allow,
        reasons=verdict.reasons,
        obligations=[dict(o) for o in result.obligations],
        bundle=runtime.bundle,
        revision=int(result.revision) if result.revision and result.revision.isdigit() else None,
        engine=result.engine,
        failure=result.failure,
        latency_ms=(time.perf_counter() - started) * 1000,
    )
    await repository.add(session, decision)
    # In the same transaction: no decision is answered without its audit record.
    await audit.record_decision(
        session,
        audit_context,
        principal,
        version,
        decision=decision,
        resource=input_doc["resource"],
    )
    await gates.announce(session, audit_context, decision, verdict)
    return DecisionResult(
        decision_id=decision.id,
        effect=decision.effect,
        allow=decision.allow,
        reasons=decision.reasons,
        obligations=decision.obligations,
        bundle=decision.bundle,
        revision=decision.revision,
        engine=decision.engine,
        approval_id=verdict.approval_id,
        retry_after=verdict.retry_after,
    )


async def list_decisions(
    session: AsyncSession,
    who: OperatorPrincipal,
    *,
    agent_id: uuid.UUID | None,
    effect: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Decision]:
    who.require(Capability.decisions_read)
    return await repository.list_page(
        session,
        visible=who.visible_domains(),
        agent_id=agent_id,
        effect=effect,
        action=action,
        since=since,
        until=until,
        after=after,
        limit=limit,
    )


async def list_replays(
    session: AsyncSession,
    who: OperatorPrincipal,
    decision_id: uuid.UUID,
    *,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[DecisionReplay]:
    """The replays of one decision visible to ``who``, oldest first (decisions:read)."""
    who.require(Capability.decisions_read)
    return await repository.list_replays(
        session, decision_id, visible=who.visible_domains(), after=after, limit=limit
    )

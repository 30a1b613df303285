"""Deciding on an agent's action and recording the decision.

The trust boundary is in the input's shape. ``agent`` (identity, domain, status, autonomy level
and version, from the verified token and the registry) and ``vouched`` (the control plane's
clock) are what the control plane vouches for; ``resource`` and ``context`` are the agent's
claims, passed exactly as sent. The shipped policy grants only on vouched facts and policy data;
a claim may only make a decision stricter (see policies/agents/authz.rego).

The decision row is written in the same transaction that produces the answer, so an answer the
agent receives is always on record; what it keeps of the resource is redacted by the policy's
path patterns (``control_plane.kit.redaction``) before it is stored.

The hot path (issue 12), in order: one statement reads what the decision depends on besides the
request (``repository.decision_state``: active version, the bundle's active revision, the
registry and revocation state, the domain's audit redaction list, the budgets that apply); the
input is encoded once (its digest and the engine read the same text); the engine evaluates; then
``record_decision`` writes the decision row and its audit record (Core inserts, one statement on
PostgreSQL: ``kit.inserts``). On SQLite the route reads first and takes the process's writer
turn only for those writes (``kit.routing.begin_writes``): the state is read again inside the
write transaction and, if it changed meanwhile, the request runs again holding the turn
(``StaleReads``), so a decision is never recorded on state older than its write transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.audit import service as audit
from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.decisions import gates, repository
from control_plane.decisions.schemas import DecisionRequest, DecisionResult
from control_plane.kit.errors import FieldError, Unauthorized, ValidationFailed
from control_plane.kit.ids import uuid7
from control_plane.kit.inserts import Row
from control_plane.kit.redaction import obligation_patterns, redact
from control_plane.kit.routing import StaleReads, after_commit, begin_writes, writes_begun
from control_plane.kit.time import utcnow
from control_plane.models import Agent, Decision, DecisionReplay
from control_plane.oauth2.agent_auth import AgentPrincipal
from control_plane.observability import metrics, tracing
from control_plane.policy import canary
from control_plane.policy.engines import (
    Effect,
    EngineResult,
    InputLimits,
    InvalidInputError,
    encode_input,
)
from control_plane.policy.runtime import PolicyRuntime
from control_plane.policy.shadow import ShadowJob


def _agent_document(principal: AgentPrincipal, version: Any) -> dict[str, Any]:
    return agent_document(principal.agent, version)


def agent_document(agent: Agent, version: Any) -> dict[str, Any]:
    """The ``input.agent`` document: what the enforcement point vouches for (also served to
    enforcement points in their bundles, so the edge decides on the very same document)."""
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


def stored_input(
    input_doc: dict[str, Any] | None, result: EngineResult, key: bytes
) -> dict[str, Any] | None:
    """What the record keeps of the policy input, for replay: redacted by the path patterns of
    the policy's ``redact`` obligations (rooted at the input: ``resource.card_number``,
    ``**.iban``), so a replay sees what policy saw except redacted values. None when there is
    no input or the decision failed closed (no obligations to go by: nothing is kept)."""
    if input_doc is None or result.failure is not None:
        return None
    patterns = obligation_patterns(result.obligations)
    if not patterns:
        return input_doc
    kept, _ = redact(input_doc, patterns, key)
    return dict(kept)


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


@dataclasses.dataclass(frozen=True)
class Prefetched:
    """A decision's state read by its authentication (``prefetch``), in ``session``; ``writing``:
    whether the session's write transaction had begun then (``kit.routing.writes_begun``)."""

    session: AsyncSession
    state: repository.DecisionState
    writing: bool


async def prefetch(
    session: AsyncSession, agent_id: uuid.UUID, client_id: uuid.UUID, jti: str, bundle: str
) -> Prefetched | None:
    """Read a decision's state together with what authentication re-checks
    (``DecisionState.auth``), so that authenticating a decision costs no statement of its own
    (an ``oauth2.agent_auth.StateReader``); None when the agent is gone."""
    state = await repository.decision_state(session, agent_id, client_id, jti, bundle)
    if state is None:
        return None
    return Prefetched(session, state, writes_begun(session))


async def decide(
    session: AsyncSession,
    runtime: PolicyRuntime,
    principal: AgentPrincipal,
    body: DecisionRequest,
    limits: InputLimits,
    redaction_key: bytes,
    audit_context: audit.AuditContext,
    shadow_jobs: list[ShadowJob] | None = None,
    prefetched: Prefetched | None = None,
) -> DecisionResult:
    """Decide on ``body`` for the calling agent and record the decision (see the module doc).

    The revision that answers is the bundle's active one, or its canary for the agents the
    canary assigns (``policy.canary.route``); the answer says which (``served_by``). With a
    shadow revision set, the decision's shadow evaluation is appended to ``shadow_jobs`` for
    the caller to submit once the answer is committed (``policy.shadow``).

    Raises ``ValidationFailed`` (422) when the input exceeds ``limits``, ``Unauthorized`` (401)
    when the agent is gone, ``StaleReads`` (the route runs the request again) when what it was
    decided on changed before its write transaction began. An engine failure is a recorded
    deny, never an exception.
    """
    started = time.perf_counter()
    if (
        prefetched is not None
        and prefetched.session is session
        and prefetched.writing == writes_begun(session)
        and prefetched.state.auth is not None
        and prefetched.state.auth.agent.id == principal.agent.id
    ):
        state = prefetched.state
    else:
        state = await _state(session, principal, runtime.bundle)
    version = state.version
    input_doc = decision_input(principal, version, body)
    # Budgets left are a vouched fact the policy may read (input.vouched.budget).
    snap = gates.prepare(input_doc, state.budgets)
    try:
        encoded = encode_input(input_doc, limits)
    except InvalidInputError as exc:
        raise ValidationFailed(
            f"The decision input cannot be evaluated: {exc}.",
            errors=[FieldError(pointer="/body", detail=str(exc))],
        ) from None
    route = canary.route(
        runtime.bundle, state.routing, str(principal.agent.id), principal.agent.domain
    )
    result = await runtime.decide_at(
        session, route.revision, input_doc, encoded=encoded, role=route.served_by
    )
    # SQLite, reads first: once the writer turn is ours, was the decision taken on what is still
    # the state? (A revocation, suspension, new version or revision meanwhile.)
    if await begin_writes(session) and await _state(session, principal, runtime.bundle) != state:
        raise StaleReads
    decision_id = uuid7()
    # Approvals and budgets, in this transaction: an approval consumed, a budget window used.
    verdict = await gates.judge(
        session, audit_context, principal, version, body, input_doc, result, snap, decision_id
    )
    judged = dataclasses.replace(
        result,
        effect=Effect(verdict.effect),
        allow=verdict.allow,
        reasons=tuple(verdict.reasons),
    )
    # A deny's event goes in with the decision (one statement on PostgreSQL).
    event = gates.denied_event(
        session, principal, decision_id, body.action, judged.effect, judged.reasons
    )
    decision = await record_decision(
        session,
        principal,
        version,
        action=body.action,
        resource=input_doc["resource"],
        input_digest="sha256:" + hashlib.sha256(encoded.encode()).hexdigest(),
        result=judged,
        bundle=runtime.bundle,
        redaction_key=redaction_key,
        audit_context=audit_context,
        latency_ms=(time.perf_counter() - started) * 1000,
        decision_id=decision_id,
        domain_redaction=state.redaction,
        input_doc=input_doc,
        served_by=route.served_by,
        also=event,
    )
    await gates.announce(session, audit_context, decision, verdict)
    # Counted once the decision is stored (a rolled-back decision was never made).
    effect, engine, failure, served_by = (
        decision.effect,
        decision.engine,
        decision.failure,
        route.served_by,
    )
    after_commit(session, lambda: metrics.observe_decision(effect, engine, failure, started))
    after_commit(session, lambda: metrics.observe_canary(served_by))
    if route.shadow is not None and shadow_jobs is not None:
        shadow_jobs.append(_shadow_job(decision, route.shadow, input_doc, encoded, result))
    return DecisionResult(
        decision_id=decision.id,
        effect=decision.effect,
        allow=decision.allow,
        reasons=decision.reasons,
        obligations=decision.obligations,
        bundle=decision.bundle,
        revision=decision.revision,
        engine=decision.engine,
        served_by=route.served_by,
        approval_id=verdict.approval_id,
        retry_after=verdict.retry_after,
    )


def _shadow_job(
    decision: repository.RecordedDecision,
    shadow: int,
    input_doc: dict[str, Any],
    encoded: str,
    result: EngineResult,
) -> ShadowJob:
    return ShadowJob(
        decision_id=decision.id,
        bundle=decision.bundle,
        revision=decision.revision,
        shadow_revision=shadow,
        action=decision.action,
        agent_id=decision.agent_id,
        domain=decision.domain,
        input_doc=input_doc,
        encoded=encoded,
        effect=str(result.effect),
        reasons=tuple(result.reasons),
        decided_at=decision.created_at,
    )


async def _state(
    session: AsyncSession, principal: AgentPrincipal, bundle: str
) -> repository.DecisionState:
    state = await repository.decision_state(
        session, principal.agent.id, principal.client_id, principal.token.jti, bundle
    )
    if state is None:  # deleted since authentication (agents are not deleted today)
        raise Unauthorized("The access token is no longer valid: the agent is gone.")
    return state


async def record_decision(
    session: AsyncSession,
    principal: AgentPrincipal,
    version: Any,
    *,
    action: str,
    resource: dict[str, Any],
    input_digest: str,
    result: EngineResult,
    bundle: str,
    redaction_key: bytes,
    audit_context: audit.AuditContext,
    latency_ms: float,
    decision_id: uuid.UUID | None = None,
    decided_at: datetime | None = None,
    enforcement_point_id: uuid.UUID | None = None,
    source: dict[str, Any] | None = None,
    domain_redaction: list[str] | None = None,
    input_doc: dict[str, Any] | None = None,
    served_by: str | None = None,
    also: Sequence[Row] = (),
) -> repository.RecordedDecision:
    """Record a decision and its audit record (kind ``decision``) in the caller's transaction
    (Core inserts, no flush; one statement on PostgreSQL): the centre's own decisions, and
    those enforcement points log (``decision_id`` theirs, ``source`` naming the point).
    ``domain_redaction``: the domain's audit redaction list when the caller has read it in this
    transaction (else the audit reads it). ``input_doc``: the input policy evaluated, kept
    redacted (``stored_input``) for impact analysis. Raises ``AuditUnavailable`` (503) or
    ``ValidationFailed`` (422) from the audit record. ``also``: rows inserted with them (the
    deny's event)."""
    decision = repository.RecordedDecision(
        id=decision_id if decision_id is not None else uuid7(),
        agent_id=principal.agent.id,
        domain=principal.agent.domain,
        client_id=principal.client_id,
        version_id=version.id if version is not None else None,
        version=version.version if version is not None else None,
        action=action,
        resource=_stored_resource(resource, result, redaction_key),
        input_digest=input_digest,
        effect=result.effect,
        allow=result.allow,
        reasons=list(result.reasons),
        obligations=[dict(o) for o in result.obligations],
        bundle=bundle,
        revision=int(result.revision) if result.revision and result.revision.isdigit() else None,
        engine=result.engine,
        failure=result.failure,
        latency_ms=latency_ms,
        trace_id=tracing.current_trace_id(),
        enforcement_point_id=enforcement_point_id,
        input=stored_input(input_doc, result, redaction_key),
        served_by=served_by,
        created_at=decided_at if decided_at is not None else utcnow(),
    )
    # In the same transaction (and statement, on PostgreSQL): no decision is answered (or
    # acknowledged) without its record.
    await audit.record_decision(
        session,
        audit_context,
        principal,
        version,
        decision=decision,
        resource=resource,
        source=source,
        domain_patterns=domain_redaction,
        also=[repository.row(decision), *also],
    )
    return decision


async def exists(session: AsyncSession, decision_id: uuid.UUID) -> bool:
    """Whether a decision with this id is on record (edge logs are idempotent by it)."""
    return await repository.get(session, decision_id) is not None


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
    """The replays of one decision visible to ``who``, oldest first (decisions:read);
    ``NotFound`` (404) for a decision that does not exist or lies outside the caller's domains."""
    await get(session, who, decision_id)
    return await repository.list_replays(
        session, decision_id, visible=who.visible_domains(), after=after, limit=limit
    )


ReplayFilter = repository.ReplayFilter
ReplayRow = repository.ReplayRow


async def count_for_replay(
    session: AsyncSession, who: OperatorPrincipal, f: ReplayFilter, cap: int
) -> int:
    """How many decisions ``f`` selects (at most ``cap``); decisions:read, the caller's
    domains only (``f.visible`` is narrowed to them)."""
    who.require(Capability.decisions_read)
    return await repository.count_for_replay(session, _narrowed(who, f), cap)


async def replay_page(
    session: AsyncSession,
    who: OperatorPrincipal,
    f: ReplayFilter,
    *,
    after: uuid.UUID | None,
    limit: int,
) -> list[ReplayRow]:
    """One keyset page (by id, above ``after``) of what impact analysis replays: id, stored
    effect and reasons, and the stored input (None when none was kept); decisions:read."""
    who.require(Capability.decisions_read)
    return await repository.replay_page(session, _narrowed(who, f), after=after, limit=limit)


def _narrowed(who: OperatorPrincipal, f: ReplayFilter) -> ReplayFilter:
    return dataclasses.replace(f, visible=who.visible_domains())


async def get(session: AsyncSession, who: OperatorPrincipal, decision_id: uuid.UUID) -> Decision:
    """One recorded decision (decisions:read); ``NotFound`` outside the caller's domains."""
    who.require(Capability.decisions_read)
    return who.visible(await repository.get(session, decision_id), what="Decision")


async def find(session: AsyncSession, decision_id: uuid.UUID) -> Decision | None:
    """The decision, whoever asks; callers apply their own rules (the console shows an
    approval's decision to the approvers who may see the approval)."""
    return await repository.get(session, decision_id)

"""The decision-log and status sinks of enforcement points (``POST /v1/logs``, ``POST /v1/status``).

Each decision-log event (OPA's format, or the SDK's same shape) becomes a decision and its audit
record through ``decisions.service.record_decision``, idempotent by ``decision_id``, attributed to
the agent whose access token (``input.token``) the control plane re-verifies here: signature,
issuer, audience, and expiry at the decision's time (logs may arrive after the token expired),
of the point's own domain. A caller-supplied ``input.agent`` is never read; the token is never
stored. The decision itself is the point's statement, recorded with the point as its source;
its policy revision and ``served_by`` come from the bundle revision the event names, when this
server built that bundle (``service.BundleCache.serving``), else they stay unknown (null).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import datetime
from typing import Any, Final

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.agents import service as agents
from control_plane.audit import service as audit
from control_plane.decisions import service as decisions
from control_plane.federation import repository
from control_plane.federation.auth import PointPrincipal, authenticate, check_scope
from control_plane.federation.schemas import LogsAccepted, RejectedEvent
from control_plane.kit.errors import FieldError, ValidationFailed
from control_plane.kit.routing import StaleReads
from control_plane.kit.time import aware, utcnow
from control_plane.models import AgentVersion, EnforcementPoint
from control_plane.oauth2.agent_auth import AgentPrincipal
from control_plane.oauth2.tokens import TokenError, verify_access_token
from control_plane.policy.engines.base import UNDEFINED, validate_decision
from control_plane.state import AppState

MAX_EVENTS: Final = 10_000


async def point_principal(
    session: AsyncSession, state: AppState, token: str, scope: str
) -> PointPrincipal:
    principal = await authenticate(session, state, token)
    check_scope(principal, scope)
    return principal


_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def _event_time(event: dict[str, Any]) -> datetime | None:
    """The event's RFC 3339 ``timestamp`` (OPA writes nanoseconds; kept to microseconds)."""
    raw = event.get("timestamp")
    if not isinstance(raw, str) or len(raw) > 40:
        return None
    try:
        return aware(datetime.fromisoformat(_FRACTION.sub(r"\1", raw.replace("Z", "+00:00"), 1)))
    except (ValueError, OverflowError):  # not a date-time, or none in UTC (year 9999, -23:59)
        return None


def _input_digest(doc: dict[str, Any]) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


async def _verified_agent(
    session: AsyncSession,
    state: AppState,
    point: EnforcementPoint,
    token: object,
    at: datetime,
) -> tuple[AgentPrincipal, AgentVersion | None] | str:
    """The agent of an edge decision: its access token re-verified here (signature, iss, aud, and
    exp at the decision time), of the point's domain. A reason string when it cannot be."""
    settings = state.settings
    try:
        verified = verify_access_token(
            await state.keystore.ring(),
            token,
            issuer=settings.issuer_url,
            audience=settings.token_audience,
            leeway=settings.token_leeway_seconds,
            now=at.timestamp(),
        )
        agent_id = uuid.UUID(verified.subject)
        client_id = uuid.UUID(verified.client_id)
    except (TokenError, ValueError):
        return "token_invalid"
    if verified.claims.get("domain") != point.domain:
        return "agent_of_another_domain"
    agent = await agents.find(session, agent_id)
    if agent is None or agent.domain != point.domain:
        return "agent_of_another_domain"
    version = await agents.active_version(session, agent.id)
    principal = AgentPrincipal(
        agent=agent, client_id=client_id, scopes=frozenset(verified.scopes), token=verified
    )
    return principal, version


def _replay_input(
    principal: AgentPrincipal, version: AgentVersion | None, doc: dict[str, Any], at: datetime
) -> dict[str, Any]:
    """The edge decision's input in the centre's form, for impact analysis: the point's
    ``action``, ``resource`` and ``context`` as logged, ``agent`` from the re-verified token's
    agent (the registry now, which is what the point's bundle carried unless it changed since)
    and ``vouched.time`` the decision's time (the edge's clock). A caller's ``input.agent`` or
    ``input.vouched`` is never read, as at the edge."""
    return {
        "agent": decisions.agent_document(principal.agent, version),
        "action": doc.get("action"),
        "resource": doc.get("resource"),
        "context": doc.get("context") if isinstance(doc.get("context"), dict) else {},
        "vouched": {"time": at.isoformat(timespec="seconds").replace("+00:00", "Z")},
    }


def _served(
    state: AppState, event: dict[str, Any], domain: str, agent_id: str
) -> tuple[int, str] | None:
    """(policy revision, served_by) of an edge decision: from the bundle revision the event
    names (OPA's ``bundles.<name>.revision``), when this server built that bundle of the
    point's domain recently; None (recorded as unknown) otherwise."""
    named = event.get("bundles")
    for item in named.values() if isinstance(named, dict) else ():
        revision = item.get("revision") if isinstance(item, dict) else None
        serving = state.bundle_cache.serving.get(revision) if isinstance(revision, str) else None
        if serving is not None and serving.domain == domain:
            return serving.served(agent_id)
    return None


async def ingest_logs(
    session: AsyncSession, state: AppState, principal: PointPrincipal, events: list[Any]
) -> LogsAccepted:
    """Record each decision-log event (OPA's format, or the SDK's same shape) as a decision and
    its audit record, attributed to the agent of its re-verified ``input.token``; idempotent by
    ``decision_id``. Raises ``ValidationFailed`` (422) for more than ``MAX_EVENTS`` events."""
    if len(events) > MAX_EVENTS:
        raise ValidationFailed(
            f"At most {MAX_EVENTS} events per upload.",
            errors=[FieldError(pointer="/body", detail=f"{len(events)} events")],
        )
    point = principal.point
    accepted, duplicates = 0, 0
    rejected: list[RejectedEvent] = []
    seen: set[uuid.UUID] = set()
    source = {"enforcement_point": str(point.id), "name": point.name, "kind": point.kind}
    for event in events:
        raw_id = event.get("decision_id") if isinstance(event, dict) else None
        try:
            decision_id = uuid.UUID(str(raw_id)) if isinstance(raw_id, str) else None
        except ValueError:
            decision_id = None
        if decision_id is None or not isinstance(event, dict):
            rejected.append(RejectedEvent(decision_id=None, reason="decision_id_invalid"))
            continue
        if decision_id in seen or await decisions.exists(session, decision_id):
            duplicates += 1
            continue
        doc = event.get("input")
        at = _event_time(event)
        if not isinstance(doc, dict) or at is None:
            rejected.append(RejectedEvent(decision_id=raw_id, reason="event_invalid"))
            continue
        found = await _verified_agent(session, state, point, doc.get("token"), at)
        if isinstance(found, str):
            rejected.append(RejectedEvent(decision_id=raw_id, reason=found))
            continue
        agent_principal, version = found
        action = doc.get("action")
        raw_resource = doc.get("resource")
        resource: dict[str, Any] = raw_resource if isinstance(raw_resource, dict) else {}
        served = _served(state, event, point.domain, str(agent_principal.agent.id))
        result = validate_decision(
            event.get("result", UNDEFINED),
            engine=point.kind,
            revision=str(served[0]) if served is not None else None,
        )
        raw_metrics = event.get("metrics")
        metrics: dict[str, Any] = raw_metrics if isinstance(raw_metrics, dict) else {}
        eval_ns = metrics.get("timer_rego_query_eval_ns") or metrics.get("timer_server_handler_ns")
        without_token = {k: v for k, v in doc.items() if k != "token"}
        try:
            await decisions.record_decision(
                session,
                agent_principal,
                version,
                action=action if isinstance(action, str) else "",
                resource=resource,
                input_digest=_input_digest(without_token),
                result=result,
                bundle=state.policy_runtime.bundle,
                redaction_key=state.redaction_key,
                audit_context=state.audit_context,
                latency_ms=float(eval_ns) / 1e6 if isinstance(eval_ns, int | float) else 0.0,
                decision_id=decision_id,
                decided_at=at,
                enforcement_point_id=point.id,
                source=source,
                input_doc=_replay_input(agent_principal, version, without_token, at),
                served_by=served[1] if served is not None else None,
            )
        except audit.RecordExists:
            # A concurrent upload of the same decision committed it after the check above: the
            # route rolls back and runs the upload again, where the decision is a duplicate.
            raise StaleReads from None
        seen.add(decision_id)
        accepted += 1
    await repository.record_contact(
        session, point.id, utcnow(), revision=None, error=None, set_error=False
    )
    return LogsAccepted(accepted=accepted, duplicates=duplicates, rejected=rejected)


def _status_error(report: dict[str, Any]) -> str | None:
    for section in ("bundles", "decision_logs", "discovery"):
        part = report.get(section)
        items = part.values() if section == "bundles" and isinstance(part, dict) else [part]
        for item in items:
            if isinstance(item, dict) and (item.get("code") or item.get("message")):
                return f"{item.get('code', '')}: {item.get('message', '')}"[:1000]
    return None


def _status_revision(report: dict[str, Any]) -> str | None:
    part = report.get("bundles")
    if isinstance(part, dict):
        for item in part.values():
            if isinstance(item, dict) and isinstance(item.get("active_revision"), str):
                return str(item["active_revision"])[:80]
    return None


async def ingest_status(
    session: AsyncSession, principal: PointPrincipal, report: dict[str, Any]
) -> None:
    """Record an OPA status report (or the SDK's same subset): last contact, the revision it runs,
    its last error (None when the report shows none)."""
    await repository.record_contact(
        session,
        principal.point.id,
        utcnow(),
        revision=_status_revision(report),
        error=_status_error(report),
        set_error=True,
    )

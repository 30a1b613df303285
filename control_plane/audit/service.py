"""Audit records written: ingestion, decisions as records, and the redaction lists.

Records are redacted (the decision's ``redact`` obligations and the domain's redaction list,
through ``kit.redaction``) and encoded with RFC 8785 (``jcs``) before anything is stored; the
raw value of a redacted field is never stored or logged. Ingestion only inserts durable rows and
queues them; the sequencer (``worker``) gives them their place in the log after commit. Reading
is in ``reading``, verification and export in ``verification``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import rfc8785
import structlog
from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.agents import service as agents
from control_plane.audit import repository
from control_plane.audit.log import (
    MAX_RECORD_BYTES,
    as_unicode,
    canonical,
    ijson_problem,
)
from control_plane.audit.schemas import (
    AuditBatch,
    AuditBatchResult,
    AuditRecordIn,
    RecordOutcome,
)
from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.domains import service as domains
from control_plane.kit import dberrors
from control_plane.kit.errors import (
    FieldError,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from control_plane.kit.ids import uuid7
from control_plane.kit.redaction import (
    InvalidPatternError,
    RedactionPattern,
    obligation_patterns,
    redact,
)
from control_plane.kit.time import utcnow
from control_plane.models import AuditPending, AuditRecordRow
from control_plane.oauth2.agent_auth import AgentPrincipal
from control_plane.observability import metrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AuditContext:
    """What the audit domain needs from the process: the redaction HMAC key (derived from the
    KEK) and the issuer host that names the logs."""

    redaction_key: bytes
    host: str

    @classmethod
    def from_issuer(cls, redaction_key: bytes, issuer_url: str) -> AuditContext:
        parts = urlsplit(issuer_url)
        host = (parts.netloc + parts.path).rstrip("/") or "localhost"
        return cls(redaction_key=redaction_key, host=host)

    def origin(self, domain: str) -> str:
        """The log's origin and checkpoint key name: ``<issuer host>/audit/<domain>``."""
        return f"{self.host}/audit/{domain}"


class AuditUnavailable(ServiceUnavailable):
    title = "Audit log unavailable"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _patterns(texts: Iterable[str]) -> list[RedactionPattern]:
    out = []
    for text in texts:
        try:
            out.append(RedactionPattern.parse(text))
        except InvalidPatternError:
            # A policy obligation naming an impossible path; nothing it could match.
            log.warning("audit_redaction_pattern_invalid")
    return out


def _agent_document(principal: AgentPrincipal, version: Any) -> dict[str, Any]:
    agent = principal.agent
    return {
        "id": str(agent.id),
        "name": agent.name,
        "version": version.version if version is not None else None,
        "model_name": getattr(version, "model_name", None),
        "model_version": getattr(version, "model_version", None),
    }


def _redacted(fields: dict[str, Any], patterns: Sequence[RedactionPattern], key: bytes) -> Any:
    copy, _ = redact(fields, patterns, key)
    return copy


def _encode(stored: dict[str, Any], pointer: str) -> bytes:
    """RFC 8785 bytes of a record, or 422 naming the field that cannot be canonicalised."""
    try:
        data = canonical(stored)
    except rfc8785.CanonicalizationError:
        where = ijson_problem(stored, pointer)
        raise ValidationFailed(
            "The record cannot be canonicalised (RFC 8785).",
            errors=[FieldError(pointer=where[0] if where else pointer, detail="not I-JSON")],
        ) from None
    if len(data) > MAX_RECORD_BYTES:
        raise ValidationFailed(
            f"The record is larger than {MAX_RECORD_BYTES} bytes once encoded.",
            errors=[FieldError(pointer=pointer, detail="too large")],
        )
    return data


# --- ingestion ----------------------------------------------------------------------------------


async def ingest(
    session: AsyncSession, principal: AgentPrincipal, batch: AuditBatch, ctx: AuditContext
) -> AuditBatchResult:
    """Store a batch of records; a status per record (stored, duplicate, conflict)."""
    agent = principal.agent
    errors: list[FieldError] = []
    for i, rec in enumerate(batch.records):
        # Only the free-form parts can hold what RFC 8785 refuses; the rest is typed.
        where = f"/body/records/{i}"
        problem = (
            ijson_problem(rec.inputs, f"{where}/inputs", 1)
            or ijson_problem(rec.outputs, f"{where}/outputs", 1)
            or ijson_problem(rec.resource.model_extra or {}, f"{where}/resource", 1)
        )
        if problem is not None:
            errors.append(FieldError(pointer=problem[0], detail=problem[1]))
    if errors:
        raise ValidationFailed("Some records cannot be canonicalised (RFC 8785).", errors=errors)

    version = await agents.active_version(session, agent.id)
    agent_doc = _agent_document(principal, version)
    domain_patterns = await repository.redaction_list(session, agent.domain)
    decision_ids = list({r.decision_id for r in batch.records if r.decision_id is not None})
    obligations = await repository.decision_obligations(session, decision_ids, agent.id)
    now = utcnow()
    received_at = _iso(now)
    # Parsed once per batch: the domain's list, and per decision its obligations added to it.
    domain_only = _patterns(domain_patterns)
    patterns_of: dict[uuid.UUID, list[RedactionPattern]] = {}
    prefix = [str(agent.id), agent.domain]

    macs: dict[uuid.UUID, str] = {}
    outcome: dict[int, str] = {}
    rows: list[dict[str, Any]] = []
    for i, rec in enumerate(batch.records):
        content, fingerprint = _content(rec, prefix)
        mac = hmac.new(ctx.redaction_key, fingerprint.encode(), hashlib.sha256).hexdigest()
        if rec.id in macs:  # the same id twice in one batch
            outcome[i] = "duplicate" if macs[rec.id] == mac else "conflict"
            continue
        macs[rec.id] = mac
        if rec.decision_id is None:
            patterns = domain_only
        else:
            found = patterns_of.get(rec.decision_id)
            if found is None:
                own = obligation_patterns(obligations.get(rec.decision_id, []))
                found = patterns_of[rec.decision_id] = _patterns([*domain_patterns, *own])
            patterns = found
        sensitive = {
            "resource": content["resource"],
            "inputs": content["inputs"],
            "outputs": content["outputs"],
            "rationale": content["rationale"],
        }
        if patterns:
            sensitive = _redacted(sensitive, patterns, ctx.redaction_key)
        stored = {
            "id": content["id"],
            "kind": "action",
            "domain": agent.domain,
            "agent": agent_doc,
            "timestamp": _iso(rec.timestamp),
            "action": rec.action,
            **sensitive,
            "status": rec.status.value,
            "decision_id": content["decision_id"],
            "trace_id": rec.trace_id,
            "traceparent": rec.traceparent,
            "parent_id": content["parent_id"],
            "received_at": received_at,
        }
        data = _encode(stored, f"/body/records/{i}")
        rows.append(
            {
                "id": rec.id,
                "action": rec.action,
                "status": rec.status.value,
                "decision_id": rec.decision_id,
                "trace_id": rec.trace_id,
                "timestamp": rec.timestamp,
                "content_mac": mac,
                "record": data.decode("utf-8"),
            }
        )
    inserted = await repository.insert_batch(
        session, rows, domain=agent.domain, agent_id=agent.id, kind="action", created_at=now
    )
    existing = await repository.content_macs(
        session, [r["id"] for r in rows if r["id"] not in inserted]
    )
    results = []
    for i, rec in enumerate(batch.records):
        status = outcome.get(i)
        if status is None:
            if rec.id in inserted:
                status = "stored"
            else:
                status = "duplicate" if existing.get(rec.id) == macs[rec.id] else "conflict"
        results.append(RecordOutcome(id=rec.id, status=status))
    metrics.observe_audit_ingested(len(inserted), "ingest")
    return AuditBatchResult(records=results)


def _content(rec: AuditRecordIn, prefix: list[str]) -> tuple[dict[str, Any], str]:
    """The record as submitted (JSON values, lone surrogates replaced) and the text its content
    MAC is taken over: any deterministic encoding tells retries apart; this one is json's
    (C-fast), unchanged so that retries of records stored earlier still match."""
    content = rec.model_dump(mode="json")

    def text(value: dict[str, Any]) -> str:
        return json.dumps(
            [*prefix, value], sort_keys=True, separators=(",", ":"), ensure_ascii=True
        )

    fingerprint = text(content)
    # ensure_ascii writes every character beyond U+FFFF as a surrogate pair and a lone surrogate
    # as itself, both "\udXXX"; without one, no text holds a surrogate and ``as_unicode`` (a
    # full copy) would change nothing.
    if "\\ud" in fingerprint:
        content = as_unicode(content)
        fingerprint = text(content)
    return content, fingerprint


async def record_decision(
    session: AsyncSession,
    ctx: AuditContext,
    principal: AgentPrincipal,
    version: Any,
    *,
    decision: Any,
    resource: dict[str, Any],
    source: dict[str, Any] | None = None,
) -> None:
    """Write the audit record (kind ``decision``) of a decision in the caller's transaction;
    ``source`` names the enforcement point that took it (absent: the centre).

    Raises ``AuditUnavailable`` (503) when it cannot be written: the caller's transaction must
    then roll back, so no decision is answered without its record.
    """
    resource = as_unicode(resource)
    problem = ijson_problem(resource, "/body/resource")
    if problem is not None:
        raise ValidationFailed(
            "The resource cannot be canonicalised (RFC 8785) for the audit record.",
            errors=[FieldError(pointer=problem[0], detail=problem[1])],
        )
    domain_patterns = await repository.redaction_list(session, decision.domain)
    if decision.failure is not None:
        kept: dict[str, Any] = {"type": resource.get("type"), "id": resource.get("id")}
    else:
        patterns = _patterns([*domain_patterns, *obligation_patterns(decision.obligations)])
        kept = _redacted({"resource": resource}, patterns, ctx.redaction_key)["resource"]
    created = decision.created_at
    stored = {
        "id": str(decision.id),
        "kind": "decision",
        "domain": decision.domain,
        "agent": _agent_document(principal, version),
        "timestamp": _iso(created),
        "action": decision.action,
        "resource": kept,
        "status": "succeeded",
        "decision": {
            "effect": decision.effect,
            "allow": decision.allow,
            "reasons": list(decision.reasons),
            "obligations": list(decision.obligations),
            "bundle": decision.bundle,
            "revision": decision.revision,
            "engine": decision.engine,
            "input_digest": decision.input_digest,
            "failure": decision.failure,
        },
        "decision_id": str(decision.id),
        "trace_id": decision.trace_id,
        "received_at": _iso(created),
    }
    if source is not None:
        stored["source"] = source
    data = _encode(stored, "/body")
    row = AuditRecordRow(
        id=decision.id,
        domain=decision.domain,
        agent_id=decision.agent_id,
        kind="decision",
        action=decision.action,
        status="succeeded",
        decision_id=decision.id,
        trace_id=decision.trace_id,
        timestamp=created,
        content_mac=hmac.new(ctx.redaction_key, data, hashlib.sha256).hexdigest(),
        record=data.decode("utf-8"),
    )
    session.add(row)
    session.add(AuditPending(record_id=decision.id, domain=decision.domain))
    try:
        await session.flush()
    except DBAPIError as exc:
        if dberrors.classify(exc) is not None:
            # The database itself is unavailable (a restart, a failover): the one answer for
            # that, 503 database_unavailable with Retry-After, comes from the kit's handler.
            raise
        log.error("audit_record_failed", kind="decision", error_type=type(exc).__name__)
        raise AuditUnavailable(
            "The decision's audit record could not be written; nothing was decided. Retry."
        ) from None


NO_AGENT = uuid.UUID(int=0)


async def record_control(
    session: AsyncSession,
    ctx: AuditContext,
    *,
    kind: str,
    domain: str,
    agent_id: uuid.UUID | None,
    action: str,
    actor: str,
    details: dict[str, Any],
    decision_id: uuid.UUID | None = None,
    status: str = "succeeded",
) -> uuid.UUID:
    """Write an audit record of a governance step in the caller's transaction (flush only):
    ``kind`` is ``approval``, ``budget``, ``kill_switch`` or ``policy``; ``actor`` the operator
    or agent that took it; ``details`` what it changed (no secrets). A domain-wide step has no agent
    (``agent_id`` None is stored as the nil UUID). Returns the record id.

    Raises ``AuditUnavailable`` (503) when it cannot be written, like ``record_decision``.
    """
    record_id = uuid7()
    now = utcnow()
    agent = agent_id or NO_AGENT
    stored = {
        "id": str(record_id),
        "kind": kind,
        "domain": domain,
        "agent": {"id": str(agent)} if agent_id is not None else None,
        "actor": actor,
        "timestamp": _iso(now),
        "action": action,
        "details": as_unicode(details),
        "status": status,
        "decision_id": str(decision_id) if decision_id else None,
        "received_at": _iso(now),
    }
    data = _encode(stored, "/body")
    session.add(
        AuditRecordRow(
            id=record_id,
            domain=domain,
            agent_id=agent,
            kind=kind,
            action=action,
            status=status,
            decision_id=decision_id,
            timestamp=now,
            content_mac=hmac.new(ctx.redaction_key, data, hashlib.sha256).hexdigest(),
            record=data.decode("utf-8"),
        )
    )
    session.add(AuditPending(record_id=record_id, domain=domain))
    try:
        await session.flush()
    except DBAPIError as exc:
        if dberrors.classify(exc) is not None:
            raise
        log.error("audit_record_failed", kind=kind, error_type=type(exc).__name__)
        raise AuditUnavailable(
            "The audit record could not be written; nothing was changed. Retry."
        ) from None
    return record_id


# --- trees --------------------------------------------------------------------------------------


async def get_redaction_list(
    session: AsyncSession, who: OperatorPrincipal, domain: str
) -> list[str]:
    who.require(Capability.audit_read)
    who.visible(domain, what="Domain", domain_of=str)
    return await repository.redaction_list(session, domain)


async def put_redaction_list(
    session: AsyncSession, who: OperatorPrincipal, domain: str, fields: list[str]
) -> list[str]:
    """Replace the domain's redaction list (domain admins of the domain, platform admins)."""
    who.require(Capability.audit_manage)
    who.visible(domain, what="Domain", domain_of=str)
    if not await domains.exists(session, domain):
        raise NotFound("Domain not found.")
    errors = []
    for i, text in enumerate(fields):
        try:
            RedactionPattern.parse(text)
        except InvalidPatternError as exc:
            errors.append(FieldError(pointer=f"/body/fields/{i}", detail=str(exc)))
    if errors:
        raise ValidationFailed("Invalid redaction patterns.", errors=errors)
    unique = list(dict.fromkeys(fields))
    await repository.put_redaction_list(session, domain, unique)
    return unique

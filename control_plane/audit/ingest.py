"""Agents' records in: ``POST /v1/audit/records``.

Each record is checked (RFC 8785 can encode its free-form parts), redacted (the domain's list and
the obligations of the decision it names), encoded and inserted with its content MAC; the answer
is a status per record (stored, duplicate, conflict). Only durable rows are written: the
sequencer (``worker``) gives them their place in the log after commit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.agents import service as agents
from control_plane.audit import repository
from control_plane.audit.log import as_unicode, ijson_problem
from control_plane.audit.records import (
    AuditContext,
    agent_document,
    encode,
    iso,
    parse_patterns,
    redacted,
)
from control_plane.audit.schemas import (
    AuditBatch,
    AuditBatchResult,
    AuditRecordIn,
    RecordOutcome,
)
from control_plane.kit.errors import FieldError, ValidationFailed
from control_plane.kit.redaction import RedactionPattern, obligation_patterns
from control_plane.kit.time import utcnow
from control_plane.oauth2.agent_auth import AgentPrincipal
from control_plane.observability import metrics


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
    agent_doc = agent_document(principal, version)
    domain_patterns = await repository.redaction_list(session, agent.domain)
    decision_ids = list({r.decision_id for r in batch.records if r.decision_id is not None})
    obligations = await repository.decision_obligations(session, decision_ids, agent.id)
    now = utcnow()
    received_at = iso(now)
    # Parsed once per batch: the domain's list, and per decision its obligations added to it.
    domain_only = parse_patterns(domain_patterns)
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
                found = patterns_of[rec.decision_id] = parse_patterns([*domain_patterns, *own])
            patterns = found
        sensitive = {
            "resource": content["resource"],
            "inputs": content["inputs"],
            "outputs": content["outputs"],
            "rationale": content["rationale"],
        }
        if patterns:
            sensitive = redacted(sensitive, patterns, ctx.redaction_key)
        stored = {
            "id": content["id"],
            "kind": "action",
            "domain": agent.domain,
            "agent": agent_doc,
            "timestamp": iso(rec.timestamp),
            "action": rec.action,
            **sensitive,
            "status": rec.status.value,
            "decision_id": content["decision_id"],
            "trace_id": rec.trace_id,
            "traceparent": rec.traceparent,
            "parent_id": content["parent_id"],
            "received_at": received_at,
        }
        data = encode(stored, f"/body/records/{i}")
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

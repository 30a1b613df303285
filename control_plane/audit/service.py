"""Audit records written: the service face of the domain.

``record_decision`` (here) writes a decision's record in the decision's transaction; ingestion of
agents' records is in ``ingest``, governance records (``record_control``) in ``governance``, the
shared context and encoding steps in ``records``; all are re-exported here for the other domains.
Records are redacted (the decision's ``redact`` obligations and the domain's redaction list,
through ``kit.redaction``) and encoded with RFC 8785 (``jcs``) before anything is stored; the raw
value of a redacted field is never stored or logged. Reading is in ``reading``, verification and
export in ``verification``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.audit import repository
from control_plane.audit.governance import NO_AGENT, record_control
from control_plane.audit.ingest import ingest
from control_plane.audit.keys import check_kek
from control_plane.audit.log import as_unicode, ijson_problem
from control_plane.audit.records import AuditContext, AuditUnavailable, RecordExists
from control_plane.audit.records import agent_document as _agent_document
from control_plane.audit.records import encode as _encode
from control_plane.audit.records import iso as _iso
from control_plane.audit.records import parse_patterns as _patterns
from control_plane.audit.records import redacted as _redacted
from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.domains import service as domains
from control_plane.kit import dberrors
from control_plane.kit.errors import (
    FieldError,
    NotFound,
    ValidationFailed,
)
from control_plane.kit.inserts import Row, table_of
from control_plane.kit.redaction import (
    InvalidPatternError,
    RedactionPattern,
    obligation_patterns,
)
from control_plane.kit.time import utcnow
from control_plane.models import AuditPending, AuditRecordRow
from control_plane.oauth2.agent_auth import AgentPrincipal

__all__ = [
    "NO_AGENT",
    "AuditContext",
    "AuditUnavailable",
    "RecordExists",
    "check_kek",
    "get_redaction_list",
    "ingest",
    "put_redaction_list",
    "record_control",
    "record_decision",
]

log = structlog.get_logger(__name__)

_RECORDS = table_of(AuditRecordRow)
_PENDING = table_of(AuditPending)


async def record_decision(
    session: AsyncSession,
    ctx: AuditContext,
    principal: AgentPrincipal,
    version: Any,
    *,
    decision: Any,
    resource: dict[str, Any],
    source: dict[str, Any] | None = None,
    domain_patterns: list[str] | None = None,
    also: Sequence[Row] = (),
) -> None:
    """Write the audit record (kind ``decision``) of a decision in the caller's transaction
    (Core inserts, no flush), after the rows ``also`` (the decision's own row) and in the same
    round trip on PostgreSQL;
    ``source`` names the enforcement point that took it (absent: the centre);
    ``domain_patterns`` is the domain's redaction list when the caller read it in this
    transaction (None: read here).

    Raises ``AuditUnavailable`` (503) when it cannot be written: the caller's transaction must
    then roll back, so no decision is answered without its record; ``RecordExists`` (a 503
    too) when another transaction stored a record with its id first.
    """
    resource = as_unicode(resource)
    problem = ijson_problem(resource, "/body/resource")
    if problem is not None:
        raise ValidationFailed(
            "The resource cannot be canonicalised (RFC 8785) for the audit record.",
            errors=[FieldError(pointer=problem[0], detail=problem[1])],
        )
    if domain_patterns is None:
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
        # Plain str, not the engine's StrEnum values: a subclass sends RFC 8785 encoding to the
        # pure-Python reference (``jcs``), about 0.2 ms per decision; the bytes are the same.
        "decision": {
            "effect": str(decision.effect),
            "allow": decision.allow,
            "reasons": list(decision.reasons),
            "obligations": list(decision.obligations),
            "bundle": decision.bundle,
            "revision": decision.revision,
            "engine": decision.engine,
            "input_digest": decision.input_digest,
            "failure": None if decision.failure is None else str(decision.failure),
        },
        "decision_id": str(decision.id),
        "trace_id": decision.trace_id,
        "received_at": _iso(created),
    }
    if source is not None:
        stored["source"] = source
    data = _encode(stored, "/body")
    # Plain rows (``kit.inserts``): building table model instances only to read their columns
    # back cost about 0.1 ms per decision.
    record = {
        "id": decision.id,
        "domain": decision.domain,
        "agent_id": decision.agent_id,
        "kind": "decision",
        "action": decision.action,
        "status": "succeeded",
        "decision_id": decision.id,
        "trace_id": decision.trace_id,
        "timestamp": created,
        "content_mac": hmac.new(ctx.redaction_key, data, hashlib.sha256).hexdigest(),
        "record": data.decode("utf-8"),
        "created_at": utcnow(),
    }
    queued = {"record_id": decision.id, "domain": decision.domain}
    try:
        # With the decision's own row (``also``): one statement on PostgreSQL.
        await repository.insert_record(
            session,
            [*also, Row(_RECORDS, record), Row(_PENDING, queued)],
        )
    except DBAPIError as exc:
        if dberrors.classify(exc) is not None:
            # The database itself is unavailable (a restart, a failover): the one answer for
            # that, 503 database_unavailable with Retry-After, comes from the kit's handler.
            raise
        if dberrors.is_unique_violation(exc):
            # Its id is taken: a concurrent upload of the same edge decision committed first.
            raise RecordExists(
                "The decision's record was stored meanwhile by another request. Retry."
            ) from None
        log.error("audit_record_failed", kind="decision", error_type=type(exc).__name__)
        raise AuditUnavailable(
            "The decision's audit record could not be written; nothing was decided. Retry."
        ) from None


# --- redaction lists ---------------------------------------------------------------------------


async def require_log(session: AsyncSession, who: OperatorPrincipal, domain: str) -> None:
    """Raises ``NotFound`` ("Log not found.", 404) unless ``domain`` is one of the caller's and
    names a domain or a log (a log outlives its domain): a misspelt name is not an empty log
    that verifies."""
    who.visible(domain, what="Log", domain_of=str)
    if not await domains.exists(session, domain) and not await repository.has_records(
        session, domain
    ):
        raise NotFound("Log not found.")


async def get_redaction_list(
    session: AsyncSession, who: OperatorPrincipal, domain: str
) -> list[str]:
    who.require(Capability.audit_read)
    who.visible(domain, what="Domain", domain_of=str)
    if not await domains.exists(session, domain):
        raise NotFound("Domain not found.")
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

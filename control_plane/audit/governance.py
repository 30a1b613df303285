"""Audit records of governance steps (approvals, budgets, kill switch), written in the
caller's transaction by ``record_control``."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.audit.log import as_unicode
from control_plane.audit.records import AuditContext, AuditUnavailable, encode, iso
from control_plane.kit import dberrors
from control_plane.kit.ids import uuid7
from control_plane.kit.inserts import Row, insert_rows, table_of
from control_plane.kit.time import utcnow
from control_plane.models import AuditPending, AuditRecordRow

log = structlog.get_logger(__name__)


NO_AGENT = uuid.UUID(int=0)
_RECORDS = table_of(AuditRecordRow)
_PENDING = table_of(AuditPending)


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
    also: Sequence[Row] = (),
) -> uuid.UUID:
    """Write an audit record of a governance step in the caller's transaction (Core inserts of
    the record and its queue entry, after the rows ``also`` of the step itself: one statement
    on PostgreSQL, ``kit.inserts``): ``kind`` is ``approval``, ``budget``, ``kill_switch`` or
    ``policy``; ``actor`` the operator or agent that took it; ``details`` what it changed (no
    secrets). A domain-wide step has no agent (``agent_id`` None is stored as the nil UUID).
    Returns the record id.

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
        "timestamp": iso(now),
        "action": action,
        "details": as_unicode(details),
        "status": status,
        "decision_id": str(decision_id) if decision_id else None,
        "received_at": iso(now),
    }
    data = encode(stored, "/body")
    record = {
        "id": record_id,
        "domain": domain,
        "agent_id": agent,
        "kind": kind,
        "action": action,
        "status": status,
        "decision_id": decision_id,
        "trace_id": None,
        "timestamp": now,
        "content_mac": hmac.new(ctx.redaction_key, data, hashlib.sha256).hexdigest(),
        "record": data.decode("utf-8"),
        "created_at": now,
    }
    rows = [
        *also,
        Row(_RECORDS, record),
        Row(_PENDING, {"record_id": record_id, "domain": domain}),
    ]
    try:
        await insert_rows(session, rows)
    except DBAPIError as exc:
        if dberrors.classify(exc) is not None:
            raise
        log.error("audit_record_failed", kind=kind, error_type=type(exc).__name__)
        raise AuditUnavailable(
            "The audit record could not be written; nothing was changed. Retry."
        ) from None
    return record_id

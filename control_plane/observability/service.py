"""What ``GET /metrics`` renders: every process's samples and the audit backlog read now."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.kit.time import utcnow
from control_plane.observability import metrics, repository


async def snapshot(session: AsyncSession) -> dict[str, tuple[str, float]]:
    """The scrape-time gauges (name -> (help, value)), read from the database."""
    backlog = await repository.audit_backlog(session)
    now = utcnow()

    def age(then: datetime | None) -> float:
        return max((now - then).total_seconds(), 0.0) if then is not None else 0.0

    return {
        "agentctl_audit_pending_records": (
            "Audit records written but not yet sequenced into their log.",
            float(backlog.pending),
        ),
        "agentctl_audit_sequencing_lag_seconds": (
            "Age of the oldest audit record waiting for its sequence number (0: none waits).",
            age(backlog.oldest_pending_at),
        ),
        "agentctl_audit_unsigned_leaves": (
            "Sequenced audit records that no signed checkpoint covers yet.",
            float(backlog.unsigned),
        ),
        "agentctl_audit_checkpoint_age_seconds": (
            "Age of the oldest sequenced audit record no signed checkpoint covers (0: all are).",
            age(backlog.oldest_unsigned_at),
        ),
    }


async def render(session: AsyncSession, who: OperatorPrincipal | None) -> bytes:
    """The Prometheus text exposition. ``who`` needs metrics:read; None is the unauthenticated
    metrics port (``AGENTCTL_METRICS_PORT``), which answers without a caller."""
    if who is not None:
        who.require(Capability.metrics_read)
    return metrics.render(await snapshot(session))

"""The SQL behind the scrape-time gauges: how far audit sequencing and checkpointing lag.

Read-only queries over the audit tables (``models``), the same in every replica, so each scrape
reads them afresh instead of keeping them in a worker's samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.kit.time import aware
from control_plane.models import AuditCheckpoint, AuditLeaf, AuditPending, AuditRecordRow


@dataclass(frozen=True)
class AuditBacklog:
    pending: int
    #: When the oldest record still waiting for a sequence number was written.
    oldest_pending_at: datetime | None
    #: Leaves no signed checkpoint covers yet, over every log.
    unsigned: int
    #: When the oldest leaf no checkpoint covers was appended.
    oldest_unsigned_at: datetime | None


async def audit_backlog(session: AsyncSession) -> AuditBacklog:
    pending = int((await session.exec(select(func.count()).select_from(AuditPending))).one())
    oldest_pending = (
        await session.exec(
            select(AuditRecordRow.created_at)
            .join(AuditPending, col(AuditPending.record_id) == col(AuditRecordRow.id))
            .order_by(col(AuditPending.id))
            .limit(1)
        )
    ).first()
    sizes = dict(
        (
            await session.exec(
                select(AuditLeaf.domain, func.max(AuditLeaf.seq)).group_by(AuditLeaf.domain)
            )
        ).all()
    )
    signed = dict(
        (
            await session.exec(
                select(AuditCheckpoint.domain, func.max(AuditCheckpoint.size)).group_by(
                    AuditCheckpoint.domain
                )
            )
        ).all()
    )
    unsigned = 0
    oldest_unsigned: datetime | None = None
    for domain, last in sizes.items():
        covered = int(signed.get(domain) or 0)
        if int(last) + 1 <= covered:
            continue
        unsigned += int(last) + 1 - covered
        first = (
            await session.exec(
                select(AuditLeaf.created_at).where(
                    AuditLeaf.domain == domain, AuditLeaf.seq == covered
                )
            )
        ).first()
        if first is not None and (oldest_unsigned is None or aware(first) < oldest_unsigned):
            oldest_unsigned = aware(first)
    return AuditBacklog(
        pending=pending,
        oldest_pending_at=aware(oldest_pending) if oldest_pending is not None else None,
        unsigned=unsigned,
        oldest_unsigned_at=oldest_unsigned,
    )

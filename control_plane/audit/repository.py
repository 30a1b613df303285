"""All SQL of the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert
from sqlalchemy import select as core_select
from sqlalchemy.dialects import sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.kit.inserts import Row, insert_rows
from control_plane.kit.prepared import Prepared
from control_plane.models import (
    Agent,
    AgentVersion,
    AuditCheckpoint,
    AuditKey,
    AuditLeaf,
    AuditPending,
    AuditRecordRow,
    AuditRedactionList,
    Decision,
)


def _is_postgres(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


# --- ingestion ----------------------------------------------------------------------------------


# One statement, one round trip, whatever the batch size: the rows travel as arrays (asyncpg
# encodes them in binary), the records that are new are inserted in batch order, and those (only
# those) are queued for the sequencer in the same order. ON CONFLICT DO NOTHING needs only the
# INSERT privilege, and waits for a concurrent transaction inserting the same id, as before.
_INSERT_BATCH_PG = """
WITH batch AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[],
                         $6::timestamptz[], $7::text[], $8::text[]) WITH ORDINALITY
        AS b(id, action, status, decision_id, trace_id, ts, content_mac, record, n)
),
inserted AS (
    INSERT INTO audit_records (id, domain, agent_id, kind, action, status, decision_id,
                               trace_id, "timestamp", content_mac, record, created_at)
    SELECT id, $9::text, $10::uuid, $11::text, action, status, decision_id, trace_id, ts,
           content_mac, record, $12::timestamptz
    FROM batch ORDER BY n
    ON CONFLICT (id) DO NOTHING
    RETURNING id
),
queued AS (
    INSERT INTO audit_pending (record_id, domain)
    SELECT batch.id, $9::text FROM batch JOIN inserted USING (id) ORDER BY batch.n
)
SELECT id FROM inserted
"""
_BATCH_COLUMNS = ("id", "action", "status", "decision_id", "trace_id", "timestamp", "content_mac")
_BATCH_COLUMNS_ALL = (*_BATCH_COLUMNS, "record")


async def insert_batch(
    session: AsyncSession,
    rows: Sequence[dict[str, Any]],
    *,
    domain: str,
    agent_id: uuid.UUID,
    kind: str,
    created_at: datetime,
) -> set[uuid.UUID]:
    """Insert the records that are new and queue them for the sequencer; returns the ids
    inserted. An id already present (or being inserted by a concurrent transaction, which this
    waits for) is skipped, not an error. ``rows``: dicts with ``id``, ``action``, ``status``,
    ``decision_id``, ``trace_id``, ``timestamp``, ``content_mac``, ``record``; ids unique."""
    if not rows:
        return set()
    if _is_postgres(session):
        conn = await session.connection()
        arrays = [[r[name] for r in rows] for name in _BATCH_COLUMNS_ALL]
        result = await conn.exec_driver_sql(
            _INSERT_BATCH_PG, (*arrays, domain, agent_id, kind, created_at)
        )
        # asyncpg's UUID is a uuid.UUID (equal, same hash).
        return {row[0] for row in result}
    stmt = (
        sqlite.insert(AuditRecordRow)
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(col(AuditRecordRow.id))
    )
    fixed = {"domain": domain, "agent_id": agent_id, "kind": kind, "created_at": created_at}
    # executemany with RETURNING: SQLAlchemy batches it into multi-row INSERTs ("insertmanyvalues")
    # from one cached compiled statement.
    result = await session.exec(stmt, params=[{**r, **fixed} for r in rows])
    inserted = {row[0] for row in result}
    await add_pending(session, [(r["id"], domain) for r in rows if r["id"] in inserted])
    return inserted


async def add_pending(session: AsyncSession, items: Sequence[tuple[uuid.UUID, str]]) -> None:
    if items:
        await session.exec(
            insert(AuditPending), params=[{"record_id": rid, "domain": d} for rid, d in items]
        )


@dataclass(frozen=True, slots=True)
class ActiveVersion:
    """The facts of an agent's active version that its records carry (``agent`` in a record)."""

    version: str
    model_name: str
    model_version: str


_INGEST_STATE = Prepared(
    core_select(
        col(AgentVersion.version),
        col(AgentVersion.model_name),
        col(AgentVersion.model_version),
        core_select(col(AuditRedactionList.fields))
        .where(col(AuditRedactionList.domain) == col(Agent.domain))
        .scalar_subquery(),
    )
    .select_from(Agent)
    .outerjoin(
        AgentVersion,
        and_(col(AgentVersion.agent_id) == col(Agent.id), col(AgentVersion.state) == "active"),
    )
    .where(col(Agent.id) == bindparam("agent_id"))
)


async def ingest_state(
    session: AsyncSession, agent_id: uuid.UUID
) -> tuple[ActiveVersion | None, list[str]]:
    """The agent's active version (None without one) and its domain's redaction list (field
    patterns, [] when none): what a batch of its records needs, in one statement compiled once
    (``kit.prepared``)."""
    rows = await _INGEST_STATE.rows(session, {"agent_id": agent_id})
    if not rows:
        return None, []
    version, model_name, model_version, fields = rows[0]
    active = None if version is None else ActiveVersion(version, model_name, model_version)
    return active, list(fields or ())


async def content_macs(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    stmt = select(AuditRecordRow.id, AuditRecordRow.content_mac).where(
        col(AuditRecordRow.id).in_(list(ids))
    )
    return dict((await session.exec(stmt)).all())


async def insert_record(session: AsyncSession, rows: Sequence[Row]) -> None:
    """INSERT an audit record and its queue entry, after ``rows`` given with them (the
    decision's own row): one statement on PostgreSQL (``kit.inserts``)."""
    await insert_rows(session, rows)


async def has_records(session: AsyncSession, domain: str) -> bool:
    """Whether any record was ever written to the log of ``domain``."""
    stmt = select(AuditRecordRow.id).where(AuditRecordRow.domain == domain).limit(1)
    return (await session.exec(stmt)).first() is not None


async def redaction_list(session: AsyncSession, domain: str) -> list[str]:
    row = await session.get(AuditRedactionList, domain)
    return list(row.fields) if row is not None else []


async def put_redaction_list(session: AsyncSession, domain: str, fields: list[str]) -> None:
    row = await session.get(AuditRedactionList, domain)
    if row is None:
        session.add(AuditRedactionList(domain=domain, fields=fields))
    else:
        row.fields = fields
        session.add(row)
    await session.flush()


async def decision_obligations(
    session: AsyncSession, ids: Sequence[uuid.UUID], agent_id: uuid.UUID
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Obligations of the caller's own decisions among ``ids``."""
    if not ids:
        return {}
    stmt = select(Decision.id, Decision.obligations).where(
        col(Decision.id).in_(list(ids)), Decision.agent_id == agent_id
    )
    return {did: list(obl) for did, obl in (await session.exec(stmt)).all()}


# --- sequencing ---------------------------------------------------------------------------------


async def pending_domains(session: AsyncSession) -> list[str]:
    stmt = select(AuditPending.domain).distinct()
    return sorted((await session.exec(stmt)).all())


async def try_log_lock(session: AsyncSession, domain: str) -> bool:
    """Take the log's sequencer lock for this transaction (PostgreSQL advisory lock); False when
    another replica holds it. SQLite serialises writers itself (BEGIN IMMEDIATE)."""
    if not _is_postgres(session):
        return True
    key = func.hashtextextended(f"agentctl/audit/{domain}", 0)
    result = await session.exec(select(func.pg_try_advisory_xact_lock(key)))
    return bool(result.one())


async def log_size(session: AsyncSession, domain: str) -> int:
    stmt = select(func.max(AuditLeaf.seq)).where(AuditLeaf.domain == domain)
    last = (await session.exec(stmt)).one()
    return 0 if last is None else int(last) + 1


async def pending_batch(
    session: AsyncSession, domain: str, limit: int
) -> list[tuple[int, uuid.UUID, str]]:
    """The oldest ``limit`` queued records of the log: (queue id, record id, record text)."""
    stmt = (
        select(AuditPending.id, AuditPending.record_id, AuditRecordRow.record)
        .join(AuditRecordRow, col(AuditRecordRow.id) == col(AuditPending.record_id))
        .where(AuditPending.domain == domain)
        .order_by(col(AuditPending.id))
        .limit(limit)
    )
    return [(int(p or 0), rid, rec) for p, rid, rec in (await session.exec(stmt)).all()]


async def append_leaves(
    session: AsyncSession,
    domain: str,
    leaves: Sequence[tuple[int, uuid.UUID, bytes, bytes]],
    done: Sequence[int],
    created_at: datetime,
) -> None:
    """Add ``leaves`` (seq, record id, canonical bytes, leaf hash) to the log of ``domain`` and
    remove the queue entries ``done``."""
    if leaves:
        names = ("seq", "record_id", "canonical", "leaf_hash")
        params = [
            {"domain": domain, "created_at": created_at, **dict(zip(names, leaf, strict=True))}
            for leaf in leaves
        ]
        await session.exec(insert(AuditLeaf), params=params)
    if done:
        await session.exec(delete(AuditPending).where(col(AuditPending.id).in_(list(done))))


# ``pending_batch`` + ``append_leaves`` in one statement, the leaves made by PostgreSQL: the bytes
# of ``log.leaf_canonical(seq, record)`` (the record's text is its RFC 8785 bytes; convert_to
# gives them in UTF-8 whatever the server encoding) and ``merkle.leaf_hash``, SHA-256(0x00 ||
# bytes). Nothing leaves the database and nothing is decoded, copied or hashed in Python; the
# verifier (``GET /v1/audit/verify``, ``agentctl audit verify``) recomputes both in Python.
_SEQUENCE_PG = """
WITH batch AS (
    SELECT p.id, p.record_id, r.record, $2::bigint - 1 + row_number() OVER (ORDER BY p.id) AS seq
    FROM (SELECT id, record_id FROM audit_pending WHERE domain = $1 ORDER BY id LIMIT $3) AS p
    JOIN audit_records r ON r.id = p.record_id
),
leaves AS (
    SELECT seq, record_id,
           convert_to('{"index":' || seq::text || ',"record":' || record || '}', 'UTF8') AS data
    FROM batch
),
added AS (
    INSERT INTO audit_leaves (domain, seq, record_id, canonical, leaf_hash, created_at)
    SELECT $1::text, seq, record_id, data, sha256(decode('00', 'hex') || data), $4::timestamptz
    FROM leaves ORDER BY seq
    RETURNING seq
),
gone AS (
    DELETE FROM audit_pending WHERE id IN (SELECT id FROM batch)
)
SELECT count(*) FROM added
"""


def sequences_in_database(session: AsyncSession) -> bool:
    """Whether ``sequence_pending`` can make the leaves in the database (PostgreSQL)."""
    return _is_postgres(session)


async def sequence_pending(
    session: AsyncSession, domain: str, start: int, limit: int, created_at: datetime
) -> int:
    """PostgreSQL: append the oldest ``limit`` queued records of ``domain`` as leaves from index
    ``start`` on, and unqueue them; returns how many."""
    conn = await session.connection()
    result = await conn.exec_driver_sql(_SEQUENCE_PG, (domain, start, limit, created_at))
    return int(result.scalar_one())


async def leaf_hashes(
    session: AsyncSession, domain: str, start: int, limit: int
) -> list[tuple[int, bytes]]:
    stmt = (
        select(AuditLeaf.seq, AuditLeaf.leaf_hash)
        .where(AuditLeaf.domain == domain, col(AuditLeaf.seq) >= start)
        .order_by(col(AuditLeaf.seq))
        .limit(limit)
    )
    return [(int(s), bytes(h)) for s, h in (await session.exec(stmt)).all()]


# The records table's columns that queries filter on, beside the record text they repeat.
INDEXED_COLUMNS = (
    "id", "domain", "agent_id", "kind", "action", "status", "decision_id", "trace_id", "timestamp"
)  # fmt: skip


async def leaves_page(
    session: AsyncSession, domain: str, after: int, limit: int
) -> list[tuple[int, uuid.UUID, bytes, bytes, str | None, dict[str, Any] | None]]:
    """(seq, record id, canonical, stored leaf hash, record text of the records table, that
    row's ``INDEXED_COLUMNS`` by name; None without a row)."""
    stmt = (
        core_select(
            col(AuditLeaf.seq),
            col(AuditLeaf.record_id),
            col(AuditLeaf.canonical),
            col(AuditLeaf.leaf_hash),
            col(AuditRecordRow.record),
            *(getattr(AuditRecordRow, name) for name in INDEXED_COLUMNS),
        )
        .outerjoin(AuditRecordRow, col(AuditRecordRow.id) == col(AuditLeaf.record_id))
        .where(col(AuditLeaf.domain) == domain, col(AuditLeaf.seq) > after)
        .order_by(col(AuditLeaf.seq))
        .limit(limit)
    )
    # sqlmodel's exec() has typed overloads for up to four columns only.
    result = await session.exec(stmt)  # type: ignore[call-overload]
    return [
        (
            int(s),
            rid,
            bytes(c),
            bytes(h),
            rec,
            None if rec is None else dict(zip(INDEXED_COLUMNS, columns, strict=True)),
        )
        for s, rid, c, h, rec, *columns in result.all()
    ]


async def log_domains(session: AsyncSession) -> list[str]:
    leaves = (await session.exec(select(AuditLeaf.domain).distinct())).all()
    cps = (await session.exec(select(AuditCheckpoint.domain).distinct())).all()
    return sorted(set(leaves) | set(cps))


# --- checkpoints and keys -----------------------------------------------------------------------


async def latest_checkpoint(session: AsyncSession, domain: str) -> AuditCheckpoint | None:
    stmt = (
        select(AuditCheckpoint)
        .where(AuditCheckpoint.domain == domain)
        .order_by(col(AuditCheckpoint.size).desc(), col(AuditCheckpoint.id).desc())
        .limit(1)
    )
    return (await session.exec(stmt)).first()


async def first_checkpoint_note(session: AsyncSession, domain: str) -> str | None:
    stmt = (
        select(AuditCheckpoint.note)
        .where(AuditCheckpoint.domain == domain)
        .order_by(col(AuditCheckpoint.size), col(AuditCheckpoint.id))
        .limit(1)
    )
    return (await session.exec(stmt)).first()


async def checkpoints_of(session: AsyncSession, domain: str) -> Sequence[AuditCheckpoint]:
    stmt = (
        select(AuditCheckpoint)
        .where(AuditCheckpoint.domain == domain)
        .order_by(col(AuditCheckpoint.size), col(AuditCheckpoint.id))
    )
    return (await session.exec(stmt)).all()


async def add_checkpoint(session: AsyncSession, checkpoint: AuditCheckpoint) -> None:
    session.add(checkpoint)
    await session.flush()


async def list_checkpoints(
    session: AsyncSession,
    *,
    visible: frozenset[str] | None,
    domain: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[AuditCheckpoint]:
    stmt = select(AuditCheckpoint).order_by(col(AuditCheckpoint.id)).limit(limit + 1)
    if visible is not None:
        stmt = stmt.where(col(AuditCheckpoint.domain).in_(sorted(visible)))
    if domain is not None:
        stmt = stmt.where(AuditCheckpoint.domain == domain)
    if after is not None:
        stmt = stmt.where(col(AuditCheckpoint.id) > after)
    return (await session.exec(stmt)).all()


async def keys(session: AsyncSession) -> Sequence[AuditKey]:
    return (await session.exec(select(AuditKey).order_by(col(AuditKey.created_at)))).all()


async def lock_keys(session: AsyncSession) -> None:
    if _is_postgres(session):
        key = func.hashtextextended("agentctl/audit/keys", 0)
        await session.exec(select(func.pg_advisory_xact_lock(key)))


async def add_key(session: AsyncSession, key: AuditKey) -> None:
    session.add(key)
    await session.flush()


# --- reading ------------------------------------------------------------------------------------


async def record(session: AsyncSession, record_id: uuid.UUID) -> AuditRecordRow | None:
    return await session.get(AuditRecordRow, record_id)


async def leaf_of(session: AsyncSession, record_id: uuid.UUID) -> AuditLeaf | None:
    stmt = select(AuditLeaf).where(AuditLeaf.record_id == record_id)
    return (await session.exec(stmt)).first()


async def list_records(
    session: AsyncSession,
    *,
    visible: frozenset[str] | None,
    domain: str | None,
    agent_id: uuid.UUID | None,
    action: str | None,
    status: str | None,
    decision_id: uuid.UUID | None,
    trace_id: str | None,
    since: datetime | None,
    until: datetime | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[AuditRecordRow]:
    stmt = select(AuditRecordRow).order_by(col(AuditRecordRow.id)).limit(limit + 1)
    if visible is not None:
        stmt = stmt.where(col(AuditRecordRow.domain).in_(sorted(visible)))
    filters: list[Any] = []
    if domain is not None:
        filters.append(AuditRecordRow.domain == domain)
    if agent_id is not None:
        filters.append(AuditRecordRow.agent_id == agent_id)
    if action is not None:
        filters.append(AuditRecordRow.action == action)
    if status is not None:
        filters.append(AuditRecordRow.status == status)
    if decision_id is not None:
        filters.append(AuditRecordRow.decision_id == decision_id)
    if trace_id is not None:
        filters.append(AuditRecordRow.trace_id == trace_id)
    if since is not None:
        filters.append(col(AuditRecordRow.timestamp) >= since)
    if until is not None:
        filters.append(col(AuditRecordRow.timestamp) < until)
    if after is not None:
        filters.append(col(AuditRecordRow.id) > after)
    if filters:
        stmt = stmt.where(*filters)
    return (await session.exec(stmt)).all()

"""kit.inserts: rows read back exactly as written, whichever way they went.

On SQLite, ``insert_rows`` runs its statements compiled once and in one hand-off to the driver,
unless something listens to the engine's statements; then SQLAlchemy runs them. Both must store
the same values (UUIDs, aware datetimes, JSON, booleans, floats, NULLs) and fail the same way.
Both databases: on PostgreSQL SQLAlchemy always runs them (one statement).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from control_plane.kit.database import Database
from control_plane.kit.inserts import Row, insert_rows, table_of
from control_plane.models import Agent, AuditPending, AuditRecordRow, Decision, Domain
from tests.fixtures.statements import watched

_DECISIONS, _RECORDS, _PENDING = (
    table_of(Decision),
    table_of(AuditRecordRow),
    table_of(AuditPending),
)


async def _agent(database: Database) -> uuid.UUID:
    async with database.sessionmaker() as session:
        session.add(Domain(name="payments"))
        await session.commit()
        agent = Agent(name="refunder", domain="payments", owner="team", labels={})
        session.add(agent)
        await session.commit()
        return agent.id


def _rows(agent_id: uuid.UUID, *, allow: bool) -> list[Row]:
    decision_id = uuid.uuid4()
    at = datetime(2026, 11, 30, 6, 30, 1, 123456, tzinfo=UTC)
    decision = {
        "id": decision_id,
        "agent_id": agent_id,
        "domain": "payments",
        "client_id": uuid.uuid4(),
        "version_id": None,
        "version": None,
        "action": "payments.refund",
        "resource": {"type": "order", "id": "o-1", "amount": 12.5, "nested": [1, "two", None]},
        "input_digest": "sha256:" + "0" * 64,
        "effect": "allow" if allow else "deny",
        "allow": allow,
        "reasons": ["r1", "é ✓"],
        "obligations": [{"type": "redact", "fields": ["resource.card"]}],
        "bundle": "default",
        "revision": 3,
        "engine": "wasm",
        "failure": None,
        "latency_ms": 1.25,
        "trace_id": None,
        "enforcement_point_id": uuid.uuid4(),
        "input": None,
        "served_by": "active",
        "created_at": at,
    }
    record = {
        "id": decision_id,
        "domain": "payments",
        "agent_id": agent_id,
        "kind": "decision",
        "action": "payments.refund",
        "status": "succeeded",
        "decision_id": decision_id,
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "timestamp": at,
        "content_mac": "ab" * 32,
        "record": '{"a":1}',
        "created_at": at,
    }
    pending = {"record_id": decision_id, "domain": "payments"}
    return [Row(_DECISIONS, decision), Row(_RECORDS, record), Row(_PENDING, pending)]


async def _insert(database: Database, rows: list[Row], *, listened: bool) -> list[str]:
    """Insert and commit ``rows``; the statements the engine's listeners saw."""
    with watched(database.engine, on=listened) as seen:
        async with database.sessionmaker() as session:
            await insert_rows(session, rows)
            await session.commit()
    return seen


async def _read(database: Database, decision_id: uuid.UUID) -> tuple[Any, ...]:
    async with database.sessionmaker() as session:
        connection = await session.connection()
        found = []
        for table, column in (
            (_DECISIONS, _DECISIONS.c.id),
            (_RECORDS, _RECORDS.c.id),
            (_PENDING, _PENDING.c.record_id),
        ):
            rows = (await connection.execute(select(table).where(column == decision_id))).all()
            found.append([row._asdict() for row in rows])
        return tuple(found)


def _without_ids(found: tuple[Any, ...]) -> tuple[Any, ...]:
    ids = ("id", "decision_id", "record_id", "client_id", "enforcement_point_id")
    return tuple([{k: v for k, v in row.items() if k not in ids} for row in rows] for rows in found)


async def test_both_ways_store_the_same_values(database: Database) -> None:
    agent_id = await _agent(database)
    fast, slow = _rows(agent_id, allow=True), _rows(agent_id, allow=True)
    await _insert(database, fast, listened=False)
    assert len(await _insert(database, slow, listened=True)) >= 1  # SQLAlchemy ran them
    fast_read = await _read(database, fast[0].values["id"])
    slow_read = await _read(database, slow[0].values["id"])
    assert [len(rows) for rows in fast_read] == [1, 1, 1]
    assert _without_ids(fast_read) == _without_ids(slow_read)
    decision, record = fast_read[0][0], fast_read[1][0]
    # Read back as written (the datetimes as the columns read them on either database).
    for name in ("resource", "reasons", "obligations", "allow", "latency_ms", "input", "revision"):
        assert decision[name] == fast[0].values[name], name
    assert decision["enforcement_point_id"] == fast[0].values["enforcement_point_id"]
    assert decision["agent_id"] == record["agent_id"] == agent_id
    assert record["decision_id"] == fast[0].values["id"]


async def test_a_failing_row_fails_as_sqlalchemy_fails_and_nothing_stays(
    database: Database,
) -> None:
    agent_id = await _agent(database)
    first = _rows(agent_id, allow=False)
    await _insert(database, first, listened=False)
    # The same audit record id again, after a new decision row: the record's primary key fails.
    again = _rows(agent_id, allow=False)
    again[1] = Row(_RECORDS, {**again[1].values, "id": first[1].values["id"]})
    for listened in (False, True):
        with pytest.raises(IntegrityError):
            await _insert(database, again, listened=listened)
    # Rolled back: the new decision row (written before the failing one) is not stored.
    found = await _read(database, again[0].values["id"])
    assert found[0] == []

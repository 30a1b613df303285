"""kit.prepared: a SELECT run with the driver answers what SQLAlchemy answers.

On SQLite ``Prepared.rows`` runs the SQL compiled once, in one hand-off, with SQLAlchemy's bind
and result processors; while something listens to the engine, SQLAlchemy runs it. Both must
give the same typed values (UUIDs, datetimes, JSON, booleans, NULLs) and fail the same way.
Both databases: on PostgreSQL SQLAlchemy always runs it (Core, through the session).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import and_, bindparam, func, literal, select
from sqlalchemy.exc import DBAPIError

from control_plane.kit.database import Database
from control_plane.kit.inserts import table_of
from control_plane.kit.prepared import Prepared
from control_plane.models import Agent, Domain
from tests.fixtures.statements import watched

_AGENTS, _DOMAINS = table_of(Agent), table_of(Domain)

_BY_DOMAIN = Prepared(
    select(
        *_AGENTS.columns,
        (_DOMAINS.c.suspended_at.is_not(None)).label("suspended"),
        _DOMAINS.c.suspended_at,
        literal("é ✓").label("text"),
    )
    .select_from(_AGENTS)
    .outerjoin(_DOMAINS, and_(_DOMAINS.c.name == _AGENTS.c.domain))
    .where(_AGENTS.c.domain == bindparam("domain"), _AGENTS.c.status == "active")
    .order_by(_AGENTS.c.name)
)


async def _rows(
    database: Database, prepared: Prepared, params: dict[str, Any], *, listened: bool
) -> tuple[list[tuple[Any, ...]], int]:
    """The rows, and how many statements the engine's listeners saw."""
    with watched(database.engine, on=listened) as seen:
        async with database.sessionmaker() as session:
            rows = await prepared.rows(session, params)
            await session.commit()
    return rows, len(seen)


async def test_rows_are_what_sqlalchemy_reads(database: Database) -> None:
    async with database.sessionmaker() as session:
        session.add(Domain(name="payments"))
        await session.commit()
        for name in ("b-agent", "a-agent"):
            session.add(
                Agent(
                    name=name,
                    domain="payments",
                    owner="team",
                    labels={"tier": "gold", "n": [1, 2.5, None]},
                    description="é",
                )
            )
        session.add(Agent(name="c-agent", domain="payments", owner="team", labels={}))
        await session.commit()
    fast, _ = await _rows(database, _BY_DOMAIN, {"domain": "payments"}, listened=False)
    slow, slow_seen = await _rows(database, _BY_DOMAIN, {"domain": "payments"}, listened=True)
    assert slow_seen >= 1  # SQLAlchemy ran it while listened to
    assert fast == slow
    assert [row[1] for row in fast] == ["a-agent", "b-agent", "c-agent"]
    first = fast[0]
    assert isinstance(first[0], uuid.UUID)
    assert first[7] == {"tier": "gold", "n": [1, 2.5, None]}
    assert isinstance(first[9], datetime)
    assert first[-3:] == (False, None, "é ✓")
    assert (await _rows(database, _BY_DOMAIN, {"domain": "none"}, listened=False))[0] == []


async def test_a_failing_select_fails_as_sqlalchemy_fails(
    database: Database, is_postgres: bool
) -> None:
    # A runtime error in each database: division by zero in PostgreSQL, malformed JSON in
    # SQLite (which answers NULL for 1/0).
    failing = Prepared(
        select(literal(1) / bindparam("zero"))
        if is_postgres
        else select(func.json_extract(bindparam("doc"), "$.a"))
    )
    params = {"zero": 0} if is_postgres else {"doc": "not json"}
    for listened in (False, True):
        with pytest.raises(DBAPIError):
            await _rows(database, failing, params, listened=listened)

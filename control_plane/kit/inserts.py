"""Several rows, each into its own table, in one round trip where the database allows it.

A decision is recorded as three rows (the decision, its audit record, the audit queue entry).
On PostgreSQL ``insert_rows`` sends them as one statement: every row but the last is a
data-modifying CTE of the last row's INSERT (all run, in one snapshot, or none; constraints are
checked at the end of the statement). SQLite has no data-modifying CTEs: one INSERT each, in
order, all of them in one hand-off to aiosqlite's thread, as SQL compiled once per shape and
engine and run with the driver (``sqlite_driver.execute_all``): through SQLAlchemy each INSERT
was a hand-off of its own and about 0.1 ms of execution machinery (cache key, execution context,
result), about 0.2 ms per decision in all (README, Performance). The parameters go through the
same bind processors SQLAlchemy applies, and a driver error is raised as the ``DBAPIError``
SQLAlchemy would raise. Where that would change what others see, SQLAlchemy runs them as before:
while anything listens to the engine's statements (tracing's SQL spans, a statement counter),
and for a shape whose INSERT takes a column default computed at execution time.

Either way these are Core inserts (no unit of work, no flush, no RETURNING), built once per
shape (tables and column names) with bound parameters, and a row is a plain mapping: a table
that gains a column gains a key, nothing else. A value may be ``Sql``: an expression the
database computes for that row (the events outbox's ``pg_current_xact_id()``), written into the
statement, not bound; such rows go through SQLAlchemy on SQLite.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Table, bindparam, insert, literal_column
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.kit import sqlite_driver


@dataclass(frozen=True, slots=True)
class Sql:
    """A column value computed by the database as the row is inserted: SQL ``text`` written in
    the code (never from input), placed in the statement as it is."""

    text: str


@dataclass(frozen=True, slots=True)
class Row:
    """One row for ``insert_rows``: its table and its column values (columns left out take
    their defaults)."""

    table: Table
    values: Mapping[str, Any]


def table_of(model: type[Any]) -> Table:
    """The table of a table model class, for rows built as plain mappings (no instance)."""
    found: Table = model.__table__
    return found


# Per row: its table, the names of its bound values, and its ``Sql`` values by name.
_RowShape = tuple[Table, tuple[str, ...], tuple[tuple[str, Sql], ...]]
_Shape = tuple[bool, tuple[_RowShape, ...]]
_STATEMENTS: dict[_Shape, list[Any]] = {}
_MAX_SHAPES = 256


def _insert(
    table: Table, names: tuple[str, ...], prefix: str, computed: tuple[tuple[str, Sql], ...] = ()
) -> Any:
    values: dict[str, Any] = {n: bindparam(f"{prefix}{n}", type_=table.c[n].type) for n in names}
    values.update((n, literal_column(sql.text)) for n, sql in computed)
    return insert(table).values(values)


def _row_shape(row: Row) -> _RowShape:
    values = row.values
    names = tuple(n for n, v in values.items() if type(v) is not Sql)
    if len(names) == len(values):
        return row.table, names, ()
    return row.table, names, tuple((n, v) for n, v in values.items() if type(v) is Sql)


def _statements(shape: _Shape) -> list[Any]:
    built = _STATEMENTS.get(shape)
    if built is not None:
        return built
    together, tables = shape
    parts = [
        _insert(table, names, f"r{i}_", computed)
        for i, (table, names, computed) in enumerate(tables)
    ]
    if together:
        *first, last = parts
        for i, part in enumerate(first):
            last = last.add_cte(part.cte(f"w{i}"))
        parts = [last]
    if len(_STATEMENTS) < _MAX_SHAPES:
        _STATEMENTS[shape] = parts
    return parts


@dataclass(frozen=True, slots=True)
class _Compiled:
    """One INSERT compiled for one engine's dialect: its SQL, and for each ``?`` in order the
    column it takes and the bind processor SQLAlchemy would apply (None: the value as is)."""

    sql: str
    binds: tuple[tuple[str, Callable[[Any], Any] | None], ...]


@functools.lru_cache(maxsize=_MAX_SHAPES)
def _compiled(table: Table, names: tuple[str, ...], dialect: Dialect) -> _Compiled | None:
    """None when the INSERT needs more than the row's values (a default computed at execution
    time): SQLAlchemy runs those."""
    compiled = _insert(table, names, "").compile(dialect=dialect)
    positions = compiled.positiontup or []
    if not set(positions) <= set(names):
        return None
    binds = tuple(
        (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
        for name in positions
    )
    return _Compiled(str(compiled), binds)


async def _insert_rows_sqlite(connection: AsyncConnection, rows: Sequence[Row]) -> bool:
    """All of ``rows`` in one hand-off; False (nothing done) when SQLAlchemy must run them."""
    if connection.sync_engine.dispatch.before_cursor_execute:
        return False
    dialect = connection.dialect
    work = []
    for row in rows:
        if any(type(v) is Sql for v in row.values.values()):
            return False
        compiled = _compiled(row.table, tuple(row.values), dialect)
        if compiled is None:
            return False
        values = row.values
        work.append(
            (
                compiled.sql,
                tuple(
                    values[name] if process is None else process(values[name])
                    for name, process in compiled.binds
                ),
            )
        )
    raw = await connection.get_raw_connection()
    try:
        await sqlite_driver.execute_all(raw.dbapi_connection, work)
    except dialect.loaded_dbapi.Error as exc:
        statements = "; ".join(sql for sql, _ in work)
        parameters = [args for _, args in work]
        raise sqlite_driver.as_sqlalchemy_error(connection, exc, statements, parameters) from exc
    return True


async def insert_rows(session: AsyncSession, rows: Sequence[Row]) -> None:
    """INSERT ``rows`` in the session's transaction: one statement on PostgreSQL, one per row
    in one hand-off on SQLite (through SQLAlchemy, one round trip each, for rows with ``Sql``
    values). Raises what the driver raises, as SQLAlchemy raises it
    (``sqlalchemy.exc.DBAPIError``); the caller rolls back (on PostgreSQL nothing is inserted
    when it does; on SQLite the rows before the failing one are, until the rollback)."""
    if not rows:
        return
    bind = session.bind
    sqlite = bind is not None and bind.dialect.name == "sqlite"
    if sqlite and await _insert_rows_sqlite(await session.connection(), rows):
        return
    together = bind is not None and bind.dialect.name == "postgresql" and len(rows) > 1
    shape = (together, tuple(_row_shape(row) for row in rows))
    params = [
        {f"r{i}_{n}": v for n, v in row.values.items() if type(v) is not Sql}
        for i, row in enumerate(rows)
    ]
    statements = _statements(shape)
    if together:
        merged: dict[str, Any] = {}
        for p in params:
            merged.update(p)
        await session.exec(statements[0], params=merged)
        return
    for statement, p in zip(statements, params, strict=True):
        await session.exec(statement, params=p)

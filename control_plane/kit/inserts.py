"""Several rows, each into its own table, in one round trip where the database allows it.

A decision is recorded as three rows (the decision, its audit record, the audit queue entry).
On PostgreSQL ``insert_rows`` sends them as one statement: every row but the last is a
data-modifying CTE of the last row's INSERT (all run, in one snapshot, or none; constraints are
checked at the end of the statement). SQLite has no data-modifying CTEs: one INSERT each, in
order. Either way these are Core inserts (no unit of work, no flush, no RETURNING), built once
per shape (tables and column names) with bound parameters, and a row is a plain mapping: a
table that gains a column gains a key, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, insert
from sqlmodel.ext.asyncio.session import AsyncSession


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


_Shape = tuple[bool, tuple[tuple[Table, tuple[str, ...]], ...]]
_STATEMENTS: dict[_Shape, list[Any]] = {}
_MAX_SHAPES = 256


def _insert(table: Table, names: tuple[str, ...], prefix: str) -> Any:
    return insert(table).values(
        {n: bindparam(f"{prefix}{n}", type_=table.c[n].type) for n in names}
    )


def _statements(shape: _Shape) -> list[Any]:
    built = _STATEMENTS.get(shape)
    if built is not None:
        return built
    together, tables = shape
    parts = [_insert(table, names, f"r{i}_") for i, (table, names) in enumerate(tables)]
    if together:
        *first, last = parts
        for i, part in enumerate(first):
            last = last.add_cte(part.cte(f"w{i}"))
        parts = [last]
    if len(_STATEMENTS) < _MAX_SHAPES:
        _STATEMENTS[shape] = parts
    return parts


async def insert_rows(session: AsyncSession, rows: Sequence[Row]) -> None:
    """INSERT ``rows`` in the session's transaction: one statement on PostgreSQL, one per row
    on SQLite. Raises what the driver raises (``sqlalchemy.exc.DBAPIError``); on PostgreSQL
    nothing is inserted when it does."""
    if not rows:
        return
    bind = session.bind
    together = bind is not None and bind.dialect.name == "postgresql" and len(rows) > 1
    shape = (together, tuple((row.table, tuple(row.values)) for row in rows))
    params = [{f"r{i}_{n}": v for n, v in row.values.items()} for i, row in enumerate(rows)]
    statements = _statements(shape)
    if together:
        merged: dict[str, Any] = {}
        for p in params:
            merged.update(p)
        await session.exec(statements[0], params=merged)
        return
    for statement, p in zip(statements, params, strict=True):
        await session.exec(statement, params=p)

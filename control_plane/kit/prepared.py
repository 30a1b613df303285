"""A hot-path SELECT compiled once per engine and, on SQLite, run with the driver.

``Prepared(statement).rows(session, params)`` answers what ``connection.execute(statement,
params).all()`` answers, as tuples (the statement's selected columns, in order, typed as
SQLAlchemy's result types give them: UUIDs, aware or naive datetimes as the column says, JSON
decoded, booleans). On SQLite it skips SQLAlchemy's per-execution work (cache key, execution
context, result metadata): the SQL is compiled once per engine, parameters go through the
same bind processors, the statement runs in one hand-off to aiosqlite's thread
(``sqlite_driver.fetch_all``) and each value through the column type's result processor. The
decision's state read takes 0.23 ms so, against 0.29 ms through an ORM ``session.exec``
(README, Performance). A driver error is raised as the ``DBAPIError`` SQLAlchemy would raise.

SQLAlchemy runs the statement, through the session's connection (Core, no ORM loading), on
PostgreSQL and while anything listens to the engine's statements (tracing's SQL spans, a
statement counter), so that they see every statement.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.kit import sqlite_driver

_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    compiled: Any  # the SQLCompiler, for construct_params
    binds: tuple[tuple[str, _Processor], ...]  # each ``?`` in order: its name and processor
    results: tuple[_Processor, ...]  # each selected column's result processor


class Prepared:
    """One SELECT (built once, with bound parameters), compiled once per engine's dialect."""

    __slots__ = ("_by_dialect", "statement")

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._by_dialect: weakref.WeakKeyDictionary[Dialect, _Compiled] = (
            weakref.WeakKeyDictionary()
        )

    def _compiled(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            binds = tuple(
                (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
                for name in compiled.positiontup or ()
            )
            results = tuple(
                c.type.dialect_impl(dialect).result_processor(dialect, None)
                for c in self.statement.selected_columns
            )
            found = _Compiled(str(compiled), compiled, binds, results)
            self._by_dialect[dialect] = found
        return found

    async def rows(self, session: AsyncSession, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The statement's rows in the session's transaction. Raises what SQLAlchemy raises
        (``sqlalchemy.exc.DBAPIError``)."""
        connection = await session.connection()
        dialect = connection.dialect
        if dialect.name != "sqlite" or connection.sync_engine.dispatch.before_cursor_execute:
            return [tuple(row) for row in await connection.execute(self.statement, params)]
        compiled = self._compiled(dialect)
        values = compiled.compiled.construct_params(params)
        args = tuple(
            values[name] if process is None else process(values[name])
            for name, process in compiled.binds
        )
        raw = await connection.get_raw_connection()
        try:
            found: Sequence[Sequence[Any]] = await sqlite_driver.fetch_all(
                raw.dbapi_connection, compiled.sql, args
            )
        except dialect.loaded_dbapi.Error as exc:
            raise sqlite_driver.as_sqlalchemy_error(connection, exc, compiled.sql, args) from exc
        results = compiled.results
        return [
            tuple(
                value if process is None else process(value)
                for value, process in zip(row, results, strict=True)
            )
            for row in found
        ]

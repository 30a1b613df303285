"""SQLAlchemy's aiosqlite adapter, with one thread hand-off per statement instead of four.

aiosqlite runs every call on its connection's own thread, and each call is a hand-off: the event
loop queues it, the thread wakes, runs it, and wakes the loop with the result. SQLAlchemy's
adapter (``sqlalchemy.dialects.sqlite.aiosqlite``) makes four per statement (open a cursor,
execute, fetch all rows, close the cursor). On the decision hot path, that is about a third of a
SQLite decision's latency (README, Performance). ``OneHopCursor`` does the four in one call on
the connection's thread and keeps the rows, description, row count and last row id it read,
which is all the non-streaming cursor of the adapter exposes. Errors are the driver's own, mapped
by the adapter exactly as before. Server-side (streaming) cursors are the adapter's, unchanged.

It relies on aiosqlite's ``Connection._execute`` (run a function on the connection's thread,
stable since aiosqlite 0.11) and on the adapter classes of SQLAlchemy 2.1. Every SQLite engine
goes through it (``kit.db.create_engine``), so the whole SQLite half of the test suite does too;
an upgrade of either library must be checked against it.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util import EMPTY_DICT

_Read = tuple[Any, list[Any], int, int | None]


def _run(conn: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Read:
    """On the connection's thread: execute, read every row, close the cursor."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _run_all(conn: sqlite3.Connection, work: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """On the connection's thread: execute each statement, in order; stop at the first error."""
    cursor = conn.cursor()
    try:
        for operation, parameters in work:
            cursor.execute(operation, parameters)
    finally:
        cursor.close()


async def execute_all(adapted: Any, work: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """Execute ``work`` (SQL text with ``?`` placeholders, and its parameters, already in the
    driver's types) on ``adapted`` (a ``OneHopConnection``: a pooled connection's
    ``dbapi_connection``) in one hand-off, in the connection's current transaction. Rows are not
    read (for INSERTs). Raises the driver's own error (``sqlite3.Error``) for the first statement
    that fails; the statements before it have run, so the caller must roll back."""
    connection: Any = adapted._connection  # an aiosqlite.Connection
    async with adapted._execute_mutex:
        await connection._execute(_run_all, connection._conn, work)


def _fetch_all(conn: sqlite3.Connection, operation: str, parameters: Sequence[Any]) -> list[Any]:
    cursor = conn.cursor()
    try:
        return cursor.execute(operation, parameters).fetchall()
    finally:
        cursor.close()


async def fetch_all(adapted: Any, operation: str, parameters: Sequence[Any]) -> list[Any]:
    """Execute one statement on ``adapted`` (as for ``execute_all``) in one hand-off and
    return all its rows, as the driver gives them. Raises the driver's own error."""
    connection: Any = adapted._connection
    async with adapted._execute_mutex:
        rows: list[Any] = await connection._execute(
            _fetch_all, connection._conn, operation, parameters
        )
    return rows


def as_sqlalchemy_error(
    connection: AsyncConnection, exc: Exception, statement: str, parameters: Any
) -> BaseException:
    """The ``DBAPIError`` subclass SQLAlchemy raises for the driver's ``exc`` (IntegrityError,
    OperationalError, ...), for statements run with the driver directly, so that callers and
    ``kit.dberrors`` see what they see from SQLAlchemy (parameters hidden as the engine says)."""
    dialect = connection.dialect
    return DBAPIError.instance(
        statement,
        parameters,
        exc,
        dialect.loaded_dbapi.Error,
        hide_parameters=connection.sync_engine.hide_parameters,
        dialect=dialect,
    )


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose ``execute`` and ``executemany`` are one hand-off each."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        # The base class opens a driver cursor here (a hand-off); this class holds none.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _async_soft_close(self) -> None:
        return None

    def close(self) -> None:
        self._rows.clear()

    async def _hop(self, operation: Any, parameters: Any, many: bool) -> None:
        connection: Any = self._connection  # an aiosqlite.Connection
        async with self._adapt_connection._execute_mutex:
            read: _Read = await connection._execute(
                _run, connection._conn, operation, parameters, many
            )
        self._description, rows, self._rowcount, self._lastrowid = read
        self._rows = collections.deque(rows)

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._hop(operation, parameters, False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Sequence[Any]) -> None:
        await self._hop(operation, seq_of_parameters, True)


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module to hand ``create_async_engine(module=...)`` for ``sqlite+aiosqlite``."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        adapted = super().connect(*arg, **kw)
        return OneHopConnection(self, adapted._connection)


def dbapi() -> OneHopDBAPI:
    """A fresh adapter over aiosqlite and sqlite3 (one per engine, as SQLAlchemy makes its own)."""
    return OneHopDBAPI(aiosqlite, sqlite3)

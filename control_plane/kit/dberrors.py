"""Which database failures are about availability, and how to answer them.

A database that is restarting, failing over, overloaded or locked is a condition the client can
retry, not a bug: the answer is ``503`` problem+json with the stable code
``database_unavailable`` and a ``Retry-After`` header, logged once as a warning with its cause.
Everything else (a constraint the code did not expect, a syntax error) stays a 500.

``classify`` looks at an exception and at the exceptions it wraps (SQLAlchemy's ``orig``, the
``__cause__`` and ``__context__`` chain), because the same failure reaches the application in
different shapes: asyncpg raises a refused connection as a bare ``OSError`` while connecting,
SQLAlchemy wraps "the database system is shutting down" in a generic ``DBAPIError`` carrying the
SQLSTATE, a dead connection surfaces as an ``InterfaceError``, and SQLite's busy timeout is an
``OperationalError`` whose ``sqlite_errorcode`` is ``SQLITE_BUSY``.

The PostgreSQL SQLSTATE codes follow its manual, appendix A ("PostgreSQL Error Codes").
"""

from __future__ import annotations

import inspect
import socket
from dataclasses import dataclass
from enum import StrEnum

import asyncpg
import structlog
from fastapi import FastAPI, Request
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from control_plane.kit.errors import ErrorCode, ProblemError

log = structlog.get_logger(__name__)


class Cause(StrEnum):
    """Why the database is unavailable; logged as ``cause`` and named in the problem detail."""

    unreachable = "unreachable"  # refused, reset, lost mid-query, connect timeout
    shutting_down = "shutting_down"  # 57P01 admin_shutdown, 57P02 crash_shutdown
    # 57P03: "the database system is shutting down", "... is starting up", "... not yet accepting
    # connections" (a new connection during a restart, a failover or crash recovery)
    cannot_connect_now = "cannot_connect_now"
    too_many_connections = "too_many_connections"  # 53300, and class 53 in general
    pool_timeout = "pool_timeout"  # no pooled connection free within the checkout timeout
    statement_timeout = "statement_timeout"  # 57014 query_canceled, or the client-side timeout
    lock_timeout = "lock_timeout"  # 55P03 lock_not_available
    serialization_failure = "serialization_failure"  # 40001, after the in-request retries
    deadlock = "deadlock"  # 40P01, after the in-request retries
    busy = "busy"  # SQLite busy or locked past its busy timeout


# Causes a request may retry by itself: the transaction was rolled back by the database and
# running it again from the start is what PostgreSQL's manual recommends (section 13.4).
RETRYABLE_IN_REQUEST = frozenset({Cause.serialization_failure, Cause.deadlock})

# Seconds a client should wait: contention clears fast; a restart or failover takes longer.
_RETRY_AFTER = {
    Cause.unreachable: 2,
    Cause.shutting_down: 2,
    Cause.cannot_connect_now: 2,
}

_SQLSTATES = {
    "57P01": Cause.shutting_down,
    "57P02": Cause.shutting_down,
    "57P03": Cause.cannot_connect_now,
    "57014": Cause.statement_timeout,
    "55P03": Cause.lock_timeout,
    "40001": Cause.serialization_failure,
    "40P01": Cause.deadlock,
}
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


# A unique or primary key constraint refused a row: PostgreSQL's unique_violation, and SQLite's
# extended result codes SQLITE_CONSTRAINT_PRIMARYKEY and SQLITE_CONSTRAINT_UNIQUE.
_UNIQUE_SQLSTATE = "23505"
_SQLITE_UNIQUE = frozenset({1555, 2067})


def is_unique_violation(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is a unique or primary key violation: the row's key is
    taken, typically by a concurrent transaction that committed first."""
    for item in _chain(exc):
        if getattr(item, "sqlstate", None) == _UNIQUE_SQLSTATE:
            return True
        if getattr(item, "sqlite_errorcode", None) in _SQLITE_UNIQUE:
            return True
    return False


@dataclass(frozen=True)
class Unavailable:
    cause: Cause
    message: str  # the driver's own words, e.g. "the database system is shutting down"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 16:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        orig = getattr(item, "orig", None)
        todo.extend(
            [orig if isinstance(orig, BaseException) else None, item.__cause__, item.__context__]
        )
    return seen


def _one(exc: BaseException) -> Cause | None:
    if isinstance(exc, PoolTimeout):
        return Cause.pool_timeout
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        if sqlstate in _SQLSTATES:
            return _SQLSTATES[sqlstate]
        if sqlstate.startswith("08"):  # connection exception
            return Cause.unreachable
        if sqlstate.startswith("53"):  # insufficient resources
            return Cause.too_many_connections
        if _connecting(exc):
            # Refused while connecting, for any other reason: the database does not accept
            # connections now (55000 with ALLOW_CONNECTIONS false), is gone (3D000), or no
            # longer takes the credentials (28P01). No statement ran; nothing to retry here.
            return Cause.cannot_connect_now
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return Cause.busy
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return Cause.unreachable
    if isinstance(exc, TimeoutError):  # asyncpg's connect and command timeouts
        return Cause.unreachable if _connecting(exc) else Cause.statement_timeout
    if isinstance(exc, ConnectionError | socket.gaierror) or type(exc) is OSError:
        # A bare OSError is how asyncio reports several failed connect attempts at once.
        return Cause.unreachable
    message = str(exc)
    if "connection is closed" in message or "connection was closed" in message:
        return Cause.unreachable  # asyncpg InterfaceError on a connection the server dropped
    return None


def _connecting(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name in ("connect", "_connect", "_connect_addr", "__connect"):
            return True
        tb = tb.tb_next
    return False


def classify(exc: BaseException) -> Unavailable | None:
    """The availability failure behind ``exc``, or None when it is not one (then it is a bug
    or an expected domain error, handled elsewhere)."""
    if isinstance(exc, ProblemError | StarletteHTTPException):
        # A deliberate answer stays what it is, whatever it was raised while handling.
        return None
    for item in _chain(exc):
        cause = _one(item)
        if cause is not None:
            # The driver's words; SQLAlchemy's further lines repeat the statement.
            lines = str(item).splitlines()
            return Unavailable(cause, lines[0][:300] if lines else type(item).__name__)
    return None


class DatabaseUnavailable(ProblemError):
    """503 ``database_unavailable``: retry after ``Retry-After`` seconds."""

    status = 503
    code = ErrorCode.database_unavailable
    title = "Database unavailable"

    def __init__(self, cause: Cause, detail: str | None = None) -> None:
        self.cause = cause
        super().__init__(
            detail or f"The database is unavailable ({cause.value}); retry shortly.",
            headers={"Retry-After": str(_RETRY_AFTER.get(cause, 1))},
            extensions={"cause": cause.value},
        )


def as_problem(exc: BaseException) -> DatabaseUnavailable | None:
    """``exc`` as the 503 it should answer, or None when it is not an availability failure."""
    if isinstance(exc, DatabaseUnavailable):
        return exc
    found = classify(exc)
    return DatabaseUnavailable(found.cause) if found is not None else None


def report(exc: BaseException, request: Request | None = None) -> DatabaseUnavailable | None:
    """``as_problem(exc)``, logged once as a warning with its cause (the one log line of the
    failure: the handler that renders the answer does not log it again)."""
    problem = as_problem(exc)
    if problem is not None:
        found = classify(exc)
        log.warning(
            "database_unavailable",
            cause=problem.cause.value,
            error=found.message if found else problem.detail,
            error_type=type(exc).__name__,
            method=request.method if request else None,
            path=request.url.path if request else None,
        )
    return problem


def install(app: FastAPI) -> None:
    """Answer availability failures that reach the app's handlers with 503 problem+json.

    Registered for the exception types database failures arrive as, so Starlette handles them
    in its exception middleware (an ``Exception`` handler would re-raise and log the failure as
    an unhandled ASGI exception). Anything of those types that is not about availability goes
    to the app's ``Exception`` handler: a 500, logged with its traceback.
    """
    unexpected = app.exception_handlers[Exception]
    render = app.exception_handlers[ProblemError]

    async def on_database_error(request: Request, exc: Exception) -> Response:
        problem = report(exc, request)
        answer = unexpected(request, exc) if problem is None else render(request, problem)
        return await answer if inspect.isawaitable(answer) else answer

    for kind in (SQLAlchemyError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        app.add_exception_handler(kind, on_database_error)

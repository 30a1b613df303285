"""Database engines and sessions for PostgreSQL (asyncpg) and SQLite (aiosqlite).

SQLite is the embedded default, so it is configured to behave under concurrent requests: WAL,
foreign keys on, a busy timeout, and ``BEGIN IMMEDIATE`` so a transaction that may write takes the
write lock when it starts. Without that, two requests that read then write can both start and the
second fails with "database is locked" at its first write instead of waiting. Read-only requests
use ``read_only`` sessions, which begin a deferred transaction: under WAL they never wait for the
writer.

Waiting is bounded everywhere (``DatabaseTimeouts``): a request waits at most ``pool`` seconds
for a connection, ``connect`` seconds to open one and ``statement`` seconds for any one
statement (PostgreSQL's ``statement_timeout``, with asyncpg's client-side command timeout a few
seconds later as a backstop for a server that stops answering; SQLite's busy timeout). Past a
bound the request fails with an availability error that ``kit.dberrors`` answers as a 503.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.kit import sqlite_driver

SessionMaker = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class DatabaseTimeouts:
    """Bounds on waiting for the database, in seconds (see the module docstring)."""

    pool: float = 10.0
    statement: float = 30.0
    connect: float = 10.0


# asyncpg's own timeout fires this long after PostgreSQL's statement_timeout should have.
_CLIENT_TIMEOUT_MARGIN = 5.0


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    timeouts: DatabaseTimeouts | None = None,
    single: bool = False,
    wal_autocheckpoint: int | None = None,
) -> AsyncEngine:
    """An engine for ``url``. ``single``: a pool of exactly one connection (no overflow), for a
    background task that must never queue behind requests for a connection.
    ``wal_autocheckpoint`` (SQLite, pages): when a commit checkpoints the log itself; None
    keeps SQLite's default (1,000), for engines whose log nothing else checkpoints
    (``kit.sqlite_wal``)."""
    t = timeouts or DatabaseTimeouts()
    sizing: dict[str, Any] = {"pool_size": 1, "max_overflow": 0} if single else {}
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            # aiosqlite with one thread hand-off per statement (kit.sqlite_driver).
            module=sqlite_driver.dbapi(),
            connect_args={"timeout": t.statement},
            pool_timeout=t.pool,
            hide_parameters=True,
            **sizing,
        )
        _configure_sqlite(
            engine,
            busy_timeout_ms=round(t.statement * 1000),
            wal_autocheckpoint=wal_autocheckpoint,
        )
        return engine
    return create_async_engine(
        url,
        **(sizing or {"pool_size": pool_size, "max_overflow": pool_size * 2}),
        # A restart or failover leaves dead connections in the pool: test each at checkout.
        pool_pre_ping=True,
        pool_timeout=t.pool,
        connect_args={
            "timeout": t.connect,
            "command_timeout": t.statement + _CLIENT_TIMEOUT_MARGIN,
            "server_settings": {"statement_timeout": str(round(t.statement * 1000))},
        },
        # Failed statements are logged; their parameters may hold agents' data.
        hide_parameters=True,
    )


def _configure_sqlite(
    engine: AsyncEngine, *, busy_timeout_ms: int, wal_autocheckpoint: int | None
) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see "begin" below).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if wal_autocheckpoint is not None:
            cursor.execute(f"PRAGMA wal_autocheckpoint={wal_autocheckpoint:d}")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get("read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine, *, read_only: bool = False) -> SessionMaker:
    """Sessions on ``engine``; ``read_only`` ones are for requests that never write."""
    bind = engine.execution_options(read_only=True) if read_only else engine
    return async_sessionmaker(bind, class_=AsyncSession, expire_on_commit=False)

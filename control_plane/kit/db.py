"""Database engines and sessions for PostgreSQL (asyncpg) and SQLite (aiosqlite).

SQLite is the embedded default, so it is configured to behave under concurrent requests: WAL,
foreign keys on, a busy timeout, and ``BEGIN IMMEDIATE`` so a transaction that may write takes the
write lock when it starts. Without that, two requests that read then write can both start and the
second fails with "database is locked" at its first write instead of waiting. Read-only requests
use ``read_only`` sessions, which begin a deferred transaction: under WAL they never wait for the
writer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel.ext.asyncio.session import AsyncSession

SessionMaker = async_sessionmaker[AsyncSession]


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        pool_pre_ping=True,
        pool_timeout=30,
        # Failed statements are logged; their parameters may hold agents' data.
        hide_parameters=True,
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see "begin" below).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        read_only = conn.get_execution_options().get("read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine, *, read_only: bool = False) -> SessionMaker:
    """Sessions on ``engine``; ``read_only`` ones are for requests that never write."""
    bind = engine.execution_options(read_only=True) if read_only else engine
    return async_sessionmaker(bind, class_=AsyncSession, expire_on_commit=False)

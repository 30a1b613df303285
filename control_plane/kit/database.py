"""The process's database handles, built once in the lifespan and shared through the app state.

``writer_turn`` is SQLite's: one writer at a time, so this process queues its writers on an
``asyncio.Lock`` (in order) rather than in SQLite's busy handler, which sleeps and retries. It is
None on PostgreSQL. Background tasks that write take the same turn; one whose write can wait
(``writing(defer=...)``) first lets requests go ahead of it.

``side_sessionmaker`` reads through a pool of its own, one connection: for state that requests
wait on but that is loaded outside them (the token signing key ring). Were it loaded through
the request pool, requests holding every pooled connection while they wait for it would wait
for a connection that none of them gives back, until the pool timeout.

On SQLite a ``WalCheckpointer`` (``kit.sqlite_wal``) checkpoints the write-ahead log in a
thread of its own, so that no request's commit does it while holding the writer turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.applications import Starlette

from control_plane.config import Settings
from control_plane.kit.db import (
    DatabaseTimeouts,
    SessionMaker,
    create_engine,
    create_sessionmaker,
)
from control_plane.kit.sqlite_wal import BACKSTOP_PAGES, WalCheckpointer

#: How often a deferred background write looks whether the writer turn is free.
_DEFER_POLL_SECONDS = 0.002


@dataclass(frozen=True)
class Database:
    engine: AsyncEngine
    sessionmaker: SessionMaker
    read_sessionmaker: SessionMaker
    writer_turn: asyncio.Lock | None
    side_engine: AsyncEngine
    side_sessionmaker: SessionMaker
    wal_checkpointer: WalCheckpointer | None = None

    @classmethod
    def open(cls, settings: Settings) -> Database:
        """The handles for ``settings``' database; in a running event loop (on SQLite it
        starts the WAL checkpointer)."""
        timeouts = DatabaseTimeouts(
            pool=settings.database_pool_timeout_seconds,
            statement=settings.database_statement_timeout_seconds,
            connect=settings.database_connect_timeout_seconds,
        )
        url = settings.resolved_database_url
        path = make_url(url).database if settings.is_sqlite else None
        checkpointer = None
        if path and path != ":memory:":
            checkpointer = WalCheckpointer(Path(path))
        backstop = BACKSTOP_PAGES if checkpointer is not None else None
        engine = create_engine(
            url,
            pool_size=settings.database_pool_size,
            timeouts=timeouts,
            wal_autocheckpoint=backstop,
        )
        side = create_engine(url, timeouts=timeouts, single=True, wal_autocheckpoint=backstop)
        if checkpointer is not None:
            checkpointer.start()
        return cls(
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            read_sessionmaker=create_sessionmaker(engine, read_only=True),
            writer_turn=asyncio.Lock() if settings.is_sqlite else None,
            side_engine=side,
            side_sessionmaker=create_sessionmaker(side, read_only=True),
            wal_checkpointer=checkpointer,
        )

    @contextlib.asynccontextmanager
    async def writing(self, *, defer: float = 0.0) -> AsyncIterator[AsyncSession]:
        """A write session outside any request, in this process's writer turn. The caller
        commits.

        ``defer`` (seconds, SQLite only): a background write that can wait first waits, up to
        that long, until no one holds the turn, so it never queues ahead of requests already
        waiting for it; past that it queues like any writer (never starved)."""
        turn = self.writer_turn
        if turn is not None and defer > 0:
            deadline = time.monotonic() + defer
            # The lock announces no release: look again every few milliseconds.
            while turn.locked() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(_DEFER_POLL_SECONDS)
        async with turn or contextlib.nullcontext(), self.sessionmaker() as session:
            yield session

    async def aclose(self) -> None:
        if self.wal_checkpointer is not None:
            await self.wal_checkpointer.aclose()
        await self.engine.dispose()
        await self.side_engine.dispose()


class KitState(Protocol):
    """What the kit needs of the application state (``control_plane.state.AppState``)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def database(self) -> Database: ...


def kit_state(app: Starlette) -> KitState:
    """The application state that the lifespan stored on ``app.state.context``."""
    return cast(KitState, app.state.context)

"""SQLite's write-ahead log is checkpointed by a thread of its own, not by the commit of a request
holding the writer turn (``kit.sqlite_wal``); PostgreSQL has no such thing."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from sqlalchemy import text

from control_plane.kit.database import Database
from control_plane.kit.sqlite_wal import BACKSTOP_PAGES


def _checkpointer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sqlite-wal")]


async def test_the_log_is_checkpointed_in_the_background(database: Database) -> None:
    checkpointer = database.wal_checkpointer
    if database.writer_turn is None:  # PostgreSQL
        assert checkpointer is None
        return
    assert checkpointer is not None
    url = database.engine.url
    assert url.database is not None
    main = Path(url.database)
    async with database.sessionmaker() as session:
        conn = await session.connection()
        # A commit checkpoints the log itself only past the backstop.
        pages = (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar_one()
        assert pages == BACKSTOP_PAGES
        await conn.exec_driver_sql("CREATE TABLE wal_probe (id INTEGER PRIMARY KEY, body TEXT)")
        await session.commit()
    before = main.stat().st_size
    # About 2 MB in 20 commits: some 500 pages, under SQLite's default automatic checkpoint
    # (1,000 pages), so only the checkpointer moves them into the database file.
    for n in range(20):
        async with database.sessionmaker() as session:
            await (await session.connection()).execute(
                text("INSERT INTO wal_probe (body) VALUES (:body)"),
                [{"body": f"{n}-{i}-" + "x" * 1000} for i in range(100)],
            )
            await session.commit()
    deadline = time.monotonic() + 10
    while main.stat().st_size < before + 1_500_000:
        assert time.monotonic() < deadline, "the log was not checkpointed into the database"
        await asyncio.sleep(0.1)
    assert _checkpointer_threads()
    busy, log_pages, done = await asyncio.to_thread(checkpointer.checkpoint)
    assert (busy, done) == (0, log_pages)


async def test_closing_stops_the_checkpointer(database: Database) -> None:
    if database.wal_checkpointer is None:  # PostgreSQL
        assert database.writer_turn is None
        return
    await asyncio.sleep(0.6)  # at least one round: the thread and its connection exist
    assert _checkpointer_threads()
    await database.aclose()
    assert not _checkpointer_threads()

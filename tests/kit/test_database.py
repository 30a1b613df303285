"""Database.writing: a background write that can wait lets requests waiting for SQLite's
writer turn go first (both databases: PostgreSQL has no turn, and nothing waits)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from control_plane.config import Settings
from control_plane.kit.database import Database


async def test_a_deferred_write_lets_waiting_writers_go_first(settings: Settings) -> None:
    database = Database.open(settings)
    order: list[str] = []

    async def background() -> None:
        async with database.writing(defer=30) as session:
            await (await session.connection()).execute(text("SELECT 1"))
            order.append("background")

    try:
        turn = database.writer_turn
        if turn is None:  # PostgreSQL: no writer turn, the write starts at once
            await asyncio.wait_for(background(), timeout=30)
            assert order == ["background"]
            return

        async def request() -> None:
            async with turn:
                order.append("request")

        await turn.acquire()  # a request writes
        deferred = asyncio.create_task(background())
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(request())  # another request arrives after it
        await asyncio.sleep(0.05)
        assert order == []
        turn.release()
        await asyncio.wait_for(asyncio.gather(deferred, waiting), timeout=30)
        # A plain lock is first come, first served: the background write would go first.
        assert order == ["request", "background"]
    finally:
        await database.aclose()

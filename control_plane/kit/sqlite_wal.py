"""SQLite's WAL checkpoints, off the request path.

In WAL mode every commit appends to the write-ahead log; a checkpoint copies the log's pages
back into the database file and, with ``synchronous=NORMAL``, is where SQLite syncs to disk.
By default the commit that takes the log past ``wal_autocheckpoint`` pages (1,000) runs that
checkpoint itself, fsync included, while it holds this process's writer turn, so every writer
queued behind it waits too: on the benchmark machine that was the decision path's p99 at
100/s (16-21 ms with it, 9-10 ms without) and at 150/s (160-245 ms, 50-60 ms).

``WalCheckpointer`` runs ``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval`` seconds on a
connection and a thread of its own. A PASSIVE checkpoint takes no lock that a writer or a
reader waits for (https://www.sqlite.org/c3ref/wal_checkpoint_v2.html): it copies what no
reader still needs and returns, and the next writer starts the log over once all of it is
back in the database. The request engine keeps an automatic checkpoint as a backstop, at
``BACKSTOP_PAGES`` (about 40 MB of log with 4 KiB pages), for when the thread cannot keep up.
Durability is unchanged: a commit is in the log before it is answered, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.request import pathname2url

import structlog

from control_plane.kit.logging import FailureStreak

log = structlog.get_logger(__name__)

#: ``wal_autocheckpoint`` of an engine whose log a ``WalCheckpointer`` keeps short.
BACKSTOP_PAGES = 10_000


class WalCheckpointer:
    """Checkpoints the WAL of the SQLite database at ``path`` every ``interval`` seconds in a
    thread of its own (see the module docstring). ``start`` in a running event loop, ``aclose``
    to stop; failures are logged (``sqlite_wal_checkpoint_failed``) and retried next round."""

    def __init__(self, path: Path, *, interval: float = 0.5) -> None:
        self._path = path
        self._interval = interval
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-wal")
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sqlite-wal")

    async def _run(self) -> None:
        streak = FailureStreak(log, "sqlite_wal_checkpoint_failed")
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._interval)
            try:
                await loop.run_in_executor(self._executor, self.checkpoint)
            except sqlite3.Error as exc:
                streak.failed(exc, database=str(self._path))
            else:
                streak.succeeded()

    def checkpoint(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint, in the calling thread: SQLite's (busy, log pages, pages
        checkpointed); busy is 1 when another connection was checkpointing. Raises
        ``sqlite3.Error``."""
        if self._conn is None:
            # mode=rw: never creates the file; isolation_level None: no implicit transaction.
            uri = f"file:{pathname2url(str(self._path))}?mode=rw"
            self._conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False
            )
        row = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    async def aclose(self) -> None:
        """Stop; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # The thread finishes a checkpoint it is in (the executor waits), then the connection
        # closes there.
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

"""Background pruning of the OAuth2 server's one-time rows.

Every ``private_key_jwt`` assertion leaves a used-``jti`` row and every revocation a revoked-token
row; both matter only until the assertion or token expires (plus leeway, already in their
``expires_at``). ``Pruner`` deletes expired rows every ``prune_interval_seconds``, started and
stopped by the app's lifespan. Any replica may prune: the deletes are idempotent. On SQLite it
takes this process's writer turn like a request would.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.exc import SQLAlchemyError

from control_plane.kit.database import Database
from control_plane.kit.time import utcnow
from control_plane.oauth2 import repository

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Pruned:
    assertions: int
    revoked_tokens: int


async def prune_expired(database: Database, now: datetime | None = None) -> Pruned:
    """Delete used assertions and revoked-token rows that expired before ``now`` (default: the
    current time), in one transaction. Returns how many rows of each went."""
    at = now or utcnow()
    async with database.writing() as session:
        assertions = await repository.prune_assertions(session, at)
        revoked = await repository.prune_revoked_tokens(session, at)
        await session.commit()
    return Pruned(assertions=assertions, revoked_tokens=revoked)


class Pruner:
    """Runs ``prune_expired`` every ``interval`` seconds until ``aclose``. A failed round (the
    database is down) is logged and retried at the next interval; it never stops the task."""

    def __init__(self, database: Database, interval: float) -> None:
        self._database = database
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="oauth2-pruner")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                pruned = await prune_expired(self._database)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("oauth2_prune_failed", error_type=type(exc).__name__)
                continue
            if pruned.assertions or pruned.revoked_tokens:
                log.info(
                    "oauth2_pruned",
                    assertions=pruned.assertions,
                    revoked_tokens=pruned.revoked_tokens,
                )

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

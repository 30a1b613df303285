"""Background pruning of the OAuth2 server's one-time rows.

Every ``private_key_jwt`` assertion leaves a used-``jti`` row and every revocation a revoked-token
row; both matter only until the assertion or token expires (plus leeway, already in their
``expires_at``). Counters of failed authentications (``kit.ratelimit``) matter only in their
window: earlier windows go in the same round. ``Pruner`` deletes expired rows every
``prune_interval_seconds``, started and stopped by the app's lifespan. Any replica may prune:
the deletes are idempotent. On SQLite it takes this process's writer turn like a request would.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.exc import SQLAlchemyError

from control_plane.kit.database import Database
from control_plane.kit.ratelimit import FailureLimiter
from control_plane.kit.time import utcnow
from control_plane.oauth2 import repository

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Pruned:
    assertions: int
    revoked_tokens: int
    auth_failures: int = 0


async def prune_expired(
    database: Database, now: datetime | None = None, *, failure_window: int = 60
) -> Pruned:
    """Delete used assertions and revoked-token rows that expired before ``now`` (default: the
    current time), and failure counts of windows (``failure_window`` seconds long) before the
    current one, in one transaction. Returns how many rows of each went."""
    at = now or utcnow()
    async with database.writing() as session:
        assertions = await repository.prune_assertions(session, at)
        revoked = await repository.prune_revoked_tokens(session, at)
        failures = await FailureLimiter(failure_window).prune(session)
        await session.commit()
    return Pruned(assertions=assertions, revoked_tokens=revoked, auth_failures=failures)


class Pruner:
    """Runs ``prune_expired`` every ``interval`` seconds until ``aclose``. A failed round (the
    database is down) is logged and retried at the next interval; it never stops the task."""

    def __init__(self, database: Database, interval: float, failure_window: int = 60) -> None:
        self._database = database
        self._interval = interval
        self._failure_window = failure_window
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
                pruned = await prune_expired(self._database, failure_window=self._failure_window)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("oauth2_prune_failed", error_type=type(exc).__name__)
                continue
            if pruned.assertions or pruned.revoked_tokens or pruned.auth_failures:
                log.info(
                    "oauth2_pruned",
                    assertions=pruned.assertions,
                    revoked_tokens=pruned.revoked_tokens,
                    auth_failures=pruned.auth_failures,
                )

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

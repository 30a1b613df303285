"""Limits on failed authentication attempts, counted in the database so they hold across replicas.

A ``FailureLimiter`` counts failures per key (``oauth-client:<id>``, ``oauth-source:<address>``,
``operator-source:<address>``) in **fixed windows** of ``window`` seconds: the row
``(key, window_start)`` in ``auth_failures``. Before credentials are checked, ``check`` reads the
current window's counts of the request's keys in one statement; a key at or over its limit
refuses the request (the caller answers 429 with ``Retry-After``: the seconds left in the window).
A failed check adds one to every key of the request in one statement
(``INSERT ... ON CONFLICT DO UPDATE SET count = count + 1``), atomic on PostgreSQL and SQLite, so
every replica sees every other's failures.

Cost: a successful authentication pays the one read and nothing else; a failure one more
statement. A refused request (429) is not counted: only attempts whose credentials were checked
count, so a key over its limit opens again when its window ends however hard it is hammered, and
each key gets at most its limit of checked guesses per window (more only by as many requests as
race past the read at once). Fixed windows allow up to twice the limit across a window boundary;
that is the price of one row per key and window.

A failed request rolls its transaction back, which would take the count with it: ``failed``
therefore registers the write with ``after_rollback``, and ``TransactionalRoute`` runs it after
the rollback, in the request's session and writer turn, and commits it alone. Windows older than
the current one are deleted by ``prune`` (the OAuth2 pruner calls it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request

from control_plane.kit import repository

AfterRollback = Callable[[AsyncSession], Awaitable[None]]
_AFTER_ROLLBACK = "agentctl_after_rollback"


def after_rollback(session: AsyncSession, write: AfterRollback) -> None:
    """Run ``write`` in ``session`` after the request's transaction failed and was rolled back;
    the route then commits what ``write`` flushed. Only ``TransactionalRoute`` sessions run it."""
    session.info.setdefault(_AFTER_ROLLBACK, []).append(write)


def take_after_rollback(session: AsyncSession) -> list[AfterRollback]:
    """The writes registered with ``after_rollback``, removed from the session."""
    writes: list[AfterRollback] = session.info.pop(_AFTER_ROLLBACK, [])
    return writes


@dataclass(frozen=True)
class Limit:
    """At most ``max_failures`` failures per window for ``key``; 0 turns the limit off."""

    key: str
    max_failures: int


class FailureLimiter:
    """Counts failures in fixed windows of ``window`` seconds (see the module docstring)."""

    def __init__(self, window: int, clock: Callable[[], float] = time.time) -> None:
        if window < 1:
            raise ValueError("window must be at least 1 second")
        self.window = window
        self._clock = clock

    def _window(self) -> tuple[int, float]:
        now = self._clock()
        return int(now // self.window) * self.window, now

    async def check(self, session: AsyncSession, limits: Sequence[Limit]) -> int | None:
        """None when every key is under its limit, else the seconds (>= 1) until the window
        in which the first full key is refused ends: the ``Retry-After``."""
        active = {limit.key: limit.max_failures for limit in limits if limit.max_failures > 0}
        if not active:
            return None
        start, now = self._window()
        counts = await repository.auth_failure_counts(session, sorted(active), start)
        if any(counts.get(key, 0) >= most for key, most in active.items()):
            return max(1, math.ceil(start + self.window - now))
        return None

    def failed(self, session: AsyncSession, limits: Sequence[Limit]) -> None:
        """Count one failure for each key, after the request's transaction is rolled back."""
        keys = sorted({limit.key for limit in limits if limit.max_failures > 0})
        if not keys:
            return
        start, _ = self._window()

        async def write(s: AsyncSession) -> None:
            await repository.count_auth_failure(s, keys, start)

        after_rollback(session, write)

    async def prune(self, session: AsyncSession) -> int:
        """Delete the windows before the current one; how many rows went (flush only)."""
        start, _ = self._window()
        return await repository.prune_auth_failures(session, start)


def source_address(request: Request) -> str:
    """The client's address as the ASGI server gives it (uvicorn applies
    ``forwarded_allow_ips``), or ``unknown``."""
    return request.client.host if request.client is not None else "unknown"

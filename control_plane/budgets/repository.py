"""All SQL for budgets. Consuming is one conditional UPDATE for every window of a decision,
each row ``used = used + n WHERE used + n <= limit`` (resetting a window that has ended), so
concurrent decisions can never take a window past its limit: the row lock orders them and a
loser's WHERE fails on that row."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, and_, bindparam, case, delete, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import Budget, BudgetCounter

WINDOWS = ("actions_per_minute", "actions_per_hour", "spend_per_day")


async def load(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> list[tuple[Budget, list[BudgetCounter]]]:
    """The budgets of ``keys`` ((scope, key) pairs) with their counters; absent ones skipped."""
    stmt = (
        select(Budget, BudgetCounter)
        .join(
            BudgetCounter,
            and_(
                col(BudgetCounter.scope) == col(Budget.scope),
                col(BudgetCounter.key) == col(Budget.key),
            ),
            isouter=True,
        )
        .where(or_(*(and_(col(Budget.scope) == s, col(Budget.key) == k) for s, k in keys)))
        .execution_options(populate_existing=True)
    )
    found: dict[tuple[str, str], tuple[Budget, list[BudgetCounter]]] = {}
    for budget, counter in (await session.exec(stmt)).all():
        entry = found.setdefault((budget.scope, budget.key), (budget, []))
        if counter is not None:
            entry[1].append(counter)
    return [found[k] for k in keys if k in found]


async def get(
    session: AsyncSession, scope: str, key: str
) -> tuple[Budget, list[BudgetCounter]] | None:
    rows = await load(session, [(scope, key)])
    return rows[0] if rows else None


async def put(session: AsyncSession, budget: Budget) -> None:
    """Insert or replace the budget; every window gets its counter row (use is kept)."""
    existing = await session.get(Budget, (budget.scope, budget.key))
    if existing is None:
        session.add(budget)
        for window in WINDOWS:
            session.add(BudgetCounter(scope=budget.scope, key=budget.key, window=window))
    else:
        for field in (*WINDOWS, "spend_field", "updated_at"):
            setattr(existing, field, getattr(budget, field))
        session.add(existing)
    await session.flush()


async def remove(session: AsyncSession, scope: str, key: str) -> None:
    await session.exec(
        delete(BudgetCounter).where(
            col(BudgetCounter.scope) == scope, col(BudgetCounter.key) == key
        )
    )
    await session.exec(delete(Budget).where(col(Budget.scope) == scope, col(Budget.key) == key))


@dataclass(frozen=True)
class Take:
    """``n`` to take from one window (``scope``, ``key``, ``window``) whose current period
    starts at ``start`` (epoch seconds), within ``limit``."""

    scope: str
    key: str
    window: str
    start: int
    n: int
    limit: int


@functools.cache
def _consume_statement(count: int) -> Any:
    """The UPDATE of ``consume`` for ``count`` takes, built once per count with bound
    parameters (``scope_i``, ``key_i``, ``window_i``, ``start_i``, ``n_i``, ``limit_i``):
    building it per call cost more than running it."""
    c = BudgetCounter
    ok: list[Any] = []
    used_cases: list[tuple[Any, Any]] = []
    start_cases: list[tuple[Any, Any]] = []
    for i in range(count):
        start = bindparam(f"start_{i}", type_=BigInteger)
        n = bindparam(f"n_{i}", type_=BigInteger)
        limit = bindparam(f"limit_{i}", type_=BigInteger)
        match = and_(
            col(c.scope) == bindparam(f"scope_{i}"),
            col(c.key) == bindparam(f"key_{i}"),
            col(c.window) == bindparam(f"window_{i}"),
        )
        current = col(c.window_start) >= start
        ok.append(
            and_(match, or_(and_(current, col(c.used) + n <= limit), col(c.window_start) < start))
        )
        used_cases += [(and_(match, current), col(c.used) + n), (match, n)]
        start_cases += [(and_(match, current), col(c.window_start)), (match, start)]
    return (
        update(c)
        .where(or_(*ok))
        .values(used=case(*used_cases), window_start=case(*start_cases))
        .returning(col(c.scope), col(c.key), col(c.window))
    )


async def consume(session: AsyncSession, takes: Sequence[Take]) -> set[tuple[str, str, str]]:
    """Take every ``takes`` entry that stays within its limit, in one UPDATE statement; returns
    the (scope, key, window) of those taken. Each row's condition is checked on the row as it
    is updated (PostgreSQL re-checks it on the locked row after a concurrent update), so two
    concurrent decisions never take more than a limit together. A window whose period has
    passed starts again at ``start`` with ``n``."""
    params: dict[str, Any] = {}
    for i, t in enumerate(takes):
        params.update(
            {
                f"scope_{i}": t.scope,
                f"key_{i}": t.key,
                f"window_{i}": t.window,
                f"start_{i}": t.start,
                f"n_{i}": t.n,
                f"limit_{i}": t.limit,
            }
        )
    rows = (await session.exec(_consume_statement(len(takes)), params=params)).all()
    return {(r[0], r[1], r[2]) for r in rows}


async def refund(session: AsyncSession, scope: str, key: str, window: str, n: int) -> None:
    """Give back ``n`` taken earlier in this transaction (its row lock is still held)."""
    c = BudgetCounter
    await session.exec(
        update(c)
        .where(col(c.scope) == scope, col(c.key) == key, col(c.window) == window)
        .values(used=col(c.used) - n)
    )

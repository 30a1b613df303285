"""Budget rules: what is left (shown to policy) and consuming it (in the decision's transaction).

Windows are fixed and aligned to UTC: a minute, an hour, a day (spend). An allowed decision
takes one action from each action window and its amount from the day's spend, for the agent's
budget and its domain's; if any window would pass its limit, nothing is taken and the decision
is a deny ``budget_exceeded`` with the seconds until that window resets (``Retry-After``).
``snapshot`` is what policy sees as ``input.vouched.budget`` (remaining per window, the control
plane's fact, not the agent's claim).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.agents import service as agents
from control_plane.audit import service as audit
from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.budgets import repository
from control_plane.budgets.rows import BudgetRow
from control_plane.budgets.schemas import BudgetPublic, BudgetUpdate, WindowUse
from control_plane.domains import service as domains
from control_plane.events import service as events
from control_plane.kit.time import utcnow
from control_plane.models import Budget, BudgetCounter

SECONDS: Final = {"actions_per_minute": 60, "actions_per_hour": 3600, "spend_per_day": 86400}


def _start(window: str, now: float) -> int:
    size = SECONDS[window]
    return int(now // size * size)


@dataclass(frozen=True)
class ScopeBudget:
    """One budget that applies: its limits per window (None: no limit), the input field its
    spend is read from, and its counters (window -> (window start, used))."""

    scope: str
    key: str
    limits: dict[str, int | None]
    spend_field: str
    counters: dict[str, tuple[int, int]]

    @classmethod
    def of(cls, budget: Budget, counters: Iterable[BudgetCounter]) -> ScopeBudget:
        return cls(
            budget.scope,
            budget.key,
            {w: getattr(budget, w) for w in SECONDS},
            budget.spend_field,
            {c.window: (c.window_start, c.used) for c in counters},
        )

    def limit(self, window: str) -> int | None:
        return self.limits.get(window)

    def used(self, window: str, now: float) -> int:
        counter = self.counters.get(window)
        if counter is None or counter[0] < _start(window, now):
            return 0
        return counter[1]

    def remaining(self, now: float) -> dict[str, int]:
        out = {}
        for window in SECONDS:
            limit = self.limit(window)
            if limit is not None:
                out[window] = max(0, limit - self.used(window, now))
        return out


@dataclass(frozen=True)
class Snapshot:
    scopes: tuple[ScopeBudget, ...]
    now: float

    def vouched(self) -> dict[str, dict[str, int]]:
        """``input.vouched.budget``: ``{"agent": {...}, "domain": {...}}``, remaining per
        limited window."""
        return {s.scope: s.remaining(self.now) for s in self.scopes}


@dataclass(frozen=True)
class Exceeded:
    scope: str
    window: str
    retry_after: int


def snapshot(rows: Iterable[BudgetRow]) -> Snapshot | None:
    """The budgets that apply to the agent (its own and its domain's) from the rows the
    decision's state statement read (``decisions.repository.BudgetRow``, one per window
    counter), or None when neither has one. No statement of its own."""
    scopes: dict[tuple[str, str], ScopeBudget] = {}
    for r in rows:
        scope = scopes.get((r.scope, r.key))
        if scope is None:
            limits = {
                "actions_per_minute": r.actions_per_minute,
                "actions_per_hour": r.actions_per_hour,
                "spend_per_day": r.spend_per_day,
            }
            scope = scopes[(r.scope, r.key)] = ScopeBudget(
                r.scope, r.key, limits, r.spend_field, {}
            )
        if r.window is not None and r.window_start is not None and r.used is not None:
            scope.counters[r.window] = (r.window_start, r.used)
    if not scopes:
        return None
    return Snapshot(scopes=tuple(scopes.values()), now=time.time())


def _amount(document: dict[str, Any], path: str) -> int:
    node: Any = document
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return 0
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return 0
    if not math.isfinite(node) or node <= 0:
        return 0
    return math.ceil(node)


async def consume(
    session: AsyncSession, snap: Snapshot, input_doc: dict[str, Any]
) -> Exceeded | None:
    """Take one action and the input's amount from every applicable window (flush only); on
    the first window that cannot take it, give back what was taken and return which."""
    now = time.time()
    takes: list[repository.Take] = []
    for scope in snap.scopes:
        for window in SECONDS:
            limit = scope.limit(window)
            if limit is None:
                continue
            n = _amount(input_doc, scope.spend_field) if window == "spend_per_day" else 1
            if n == 0:
                continue
            takes.append(
                repository.Take(scope.scope, scope.key, window, _start(window, now), n, limit)
            )
    if not takes:
        return None
    # One statement for every window (none is taken past its limit); when some window cannot
    # take it, give back what the others took (a refusal: rare) and say which window refused.
    refused = next((t for t in takes if t.n > t.limit), None)
    taken = set() if refused is not None else await repository.consume(session, takes)
    if refused is None and len(taken) == len(takes):
        return None
    for t in takes:
        if (t.scope, t.key, t.window) in taken:
            await repository.refund(session, t.scope, t.key, t.window, t.n)
        elif refused is None:
            refused = t
    assert refused is not None
    retry = max(1, math.ceil(refused.start + SECONDS[refused.window] - now))
    return Exceeded(refused.scope, refused.window, retry)


async def refund(session: AsyncSession, snap: Snapshot, input_doc: dict[str, Any]) -> None:
    """Give back what a successful ``consume`` of the same input took (flush only)."""
    for scope in snap.scopes:
        for window in SECONDS:
            if scope.limit(window) is None:
                continue
            n = _amount(input_doc, scope.spend_field) if window == "spend_per_day" else 1
            if n:
                await repository.refund(session, scope.scope, scope.key, window, n)


async def refused(
    session: AsyncSession,
    ctx: audit.AuditContext,
    exceeded: Exceeded,
    *,
    domain: str,
    agent_id: uuid.UUID,
    decision_id: uuid.UUID,
) -> None:
    """The ``budget.exceeded.v1`` event and audit record of a refusal (flush only)."""
    data = {
        "agent_id": str(agent_id),
        "domain": domain,
        "decision_id": str(decision_id),
        "scope": exceeded.scope,
        "window": exceeded.window,
        "retry_after_seconds": exceeded.retry_after,
    }
    await events.emit(session, "budget.exceeded.v1", data, domain=domain, subject=str(agent_id))
    await audit.record_control(
        session,
        ctx,
        kind="budget",
        domain=domain,
        agent_id=agent_id,
        action="budget.exceeded",
        actor=f"agent:{agent_id}",
        details=data,
        decision_id=decision_id,
        status="refused",
    )


# --- operators -----------------------------------------------------------------------------------


def _public(scope: str, key: str, found: tuple[Budget, list[BudgetCounter]] | None) -> BudgetPublic:
    now = time.time()
    if found is None:
        return BudgetPublic(
            scope=scope,
            key=key,
            actions_per_minute=None,
            actions_per_hour=None,
            spend_per_day=None,
            spend_field="resource.amount",
            use={},
            updated_at=None,
        )
    budget, counters = found
    sb = ScopeBudget.of(budget, counters)
    use = {}
    for window, size in SECONDS.items():
        limit = sb.limit(window)
        if limit is None:
            continue
        used = sb.used(window, now)
        use[window] = WindowUse(
            limit=limit,
            used=used,
            remaining=max(0, limit - used),
            resets_at=datetime.fromtimestamp(_start(window, now) + size, UTC),
        )
    return BudgetPublic(
        scope=scope,
        key=key,
        actions_per_minute=budget.actions_per_minute,
        actions_per_hour=budget.actions_per_hour,
        spend_per_day=budget.spend_per_day,
        spend_field=budget.spend_field,
        use=use,
        updated_at=budget.updated_at,
    )


async def _target(
    session: AsyncSession, who: OperatorPrincipal, scope: str, key: str, *, write: bool
) -> str:
    """The budget's key after checking the caller may read (or write) it: 403 by role, 404
    outside the caller's domains."""
    if scope == "agent":
        agent = await (
            agents.writable(session, who, uuid.UUID(key))
            if write
            else agents.readable(session, who, uuid.UUID(key))
        )
        if write:
            who.require(Capability.budgets_write)
        return str(agent.id)
    await domains.get(session, who, key)
    if write:
        who.require(Capability.budgets_write)
    return key


async def get(session: AsyncSession, who: OperatorPrincipal, scope: str, key: str) -> BudgetPublic:
    key = await _target(session, who, scope, key, write=False)
    return _public(scope, key, await repository.get(session, scope, key))


async def put(
    session: AsyncSession,
    ctx: audit.AuditContext,
    who: OperatorPrincipal,
    scope: str,
    key: str,
    body: BudgetUpdate,
) -> BudgetPublic:
    """Set the limits (all null removes the budget), audited (kind ``budget``)."""
    key = await _target(session, who, scope, key, write=True)
    limits = body.model_dump()
    if all(limits[w] is None for w in SECONDS):
        await repository.remove(session, scope, key)
    else:
        await repository.put(session, Budget(scope=scope, key=key, updated_at=utcnow(), **limits))
    if scope == "agent":
        agent = await agents.find(session, uuid.UUID(key))
        domain, agent_id = (agent.domain if agent else ""), uuid.UUID(key)
    else:
        domain, agent_id = key, None
    await audit.record_control(
        session,
        ctx,
        kind="budget",
        domain=domain,
        agent_id=agent_id,
        action="budget.set",
        actor=who.key,
        details={"scope": scope, "key": key, **limits},
    )
    return _public(scope, key, await repository.get(session, scope, key))

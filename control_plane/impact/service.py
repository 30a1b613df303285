"""Impact analysis by replay: what a candidate revision would have decided on stored inputs.

``plan`` checks the request in the route's transaction (roles, filters, the candidate revision
and its compiled module) and counts the decisions selected; ``run`` replays them. ``run`` reads
the decisions in keyset pages of ``PAGE_SIZE`` by id, each page in a short read session of its
own, so no transaction stays open for the whole run and at most one page of decisions is held
in memory (with at most ``max_listed`` changed and not-exact entries). The window's end is fixed
when the request arrives (``until`` defaults to then), so decisions taken meanwhile are not
replayed and the count stays the end of the progress.

Each stored input is evaluated with the embedded wasm engine (a private ``WasmEngine`` loaded
with the candidate's OPA-compiled module, never the engine decisions use, so a replay can
neither slow nor change live decisions) and compared with the stored effect:

- a decision without a stored input (failed closed, or recorded before inputs were kept) is
  not replayed (``no_input``);
- a stored input holding redacted values is replayed with the markers in their place and
  compared, but counted as not exact (``redacted``);
- a decision whose stored effect came from an approval or a budget (reasons ``approved``,
  ``budget_exceeded``, ``approval_*``) is replayed but not compared: policy's own answer is not
  on record (``governance_gate``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import structlog

from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.decisions import service as decisions
from control_plane.impact.schemas import (
    ImpactChange,
    ImpactNotExact,
    ImpactReport,
    ImpactRequest,
    NotExactReason,
)
from control_plane.kit.database import Database
from control_plane.kit.errors import Conflict, FieldError, ValidationFailed
from control_plane.kit.redaction import is_marker
from control_plane.kit.time import aware
from control_plane.policy import service as policy
from control_plane.policy.engines import InputLimits, LoadedBundle

log = structlog.get_logger(__name__)

Progress = Callable[[int], None]

PAGE_SIZE: Final = 200
#: Windows of at most this many decisions are answered inline; larger ones run as a job.
INLINE_MAX: Final = 1_000
GATE_REASONS: Final = frozenset(
    {
        "approved",
        "budget_exceeded",
        "approval_pending",
        "approval_denied",
        "approval_expired",
        "approval_used",
        "approval_mismatch",
    }
)


@dataclass(frozen=True, slots=True)
class Plan:
    """A checked impact request: the candidate, the filter (window end fixed), the count."""

    who: OperatorPrincipal
    bundle: str
    revision: int
    candidate: LoadedBundle
    selection: decisions.ReplayFilter
    total: int
    max_listed: int


def _window(body: ImpactRequest, now: datetime) -> tuple[datetime | None, datetime]:
    # RFC3339DateTime refused a time with no UTC equivalent (422), so these cannot overflow.
    since = aware(body.since) if body.since is not None else None
    until = aware(body.until) if body.until is not None else now
    if since is not None and since >= until:
        raise ValidationFailed(
            "since must be before until.",
            errors=[FieldError(pointer="/body/since", detail="not before until")],
        )
    return since, until


async def plan(
    session: Any,
    who: OperatorPrincipal,
    bundle: str,
    revision: int,
    body: ImpactRequest,
    now: datetime,
) -> Plan:
    """Check an impact request. Needs policy:read and decisions:read (403 otherwise); only the
    caller's domains are replayed. Raises ``NotFound`` (404: bundle or revision),
    ``ValidationFailed`` (422: a window that ends before it starts), ``Conflict`` (409: the
    revision has no compiled module, as when it was stored without OPA)."""
    who.require(Capability.policy_read)
    who.require(Capability.decisions_read)
    since, until = _window(body, now)
    _, row = await policy.get_revision(session, who, bundle, revision)
    if not row.wasm:
        raise Conflict(
            f"Revision {revision} has no compiled module (stored without OPA); "
            "upload it again with OPA available to analyse its impact."
        )
    selection = decisions.ReplayFilter(
        visible=None,
        domain=body.domain,
        agent_id=body.agent_id,
        action=body.action,
        since=since,
        until=until,
    )
    total = await decisions.count_for_replay(session, who, selection, body.limit)
    candidate = LoadedBundle(
        modules=row.modules,
        data=row.data,
        revision=str(revision),
        digest=row.digest,
        wasm=row.wasm,
    )
    return Plan(who, bundle, revision, candidate, selection, total, body.max_listed)


def has_markers(document: object) -> bool:
    """Whether a stored input holds a redaction marker anywhere (iterative walk)."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if is_marker(node):
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


class _Tally:
    """The running report: counters, and the capped lists of changed and not-exact decisions."""

    def __init__(self, max_listed: int) -> None:
        self.max_listed = max_listed
        self.replayed = self.compared = self.unchanged = 0
        self.changes: dict[str, int] = {}
        self.changed: list[ImpactChange] = []
        self.changed_count = 0
        self.not_exact: dict[NotExactReason, int] = {
            "no_input": 0,
            "redacted": 0,
            "governance_gate": 0,
        }
        self.not_exact_listed: list[ImpactNotExact] = []

    def inexact(self, row: decisions.ReplayRow, reason: NotExactReason) -> None:
        self.not_exact[reason] += 1
        if len(self.not_exact_listed) < self.max_listed:
            self.not_exact_listed.append(ImpactNotExact(decision_id=row.id, reason=reason))

    def change(
        self, row: decisions.ReplayRow, effect: str, reasons: list[str], exact: bool
    ) -> None:
        key = f"{row.effect}->{effect}"
        self.changes[key] = self.changes.get(key, 0) + 1
        self.changed_count += 1
        if len(self.changed) < self.max_listed:
            self.changed.append(
                ImpactChange(
                    decision_id=row.id,
                    old_effect=row.effect,
                    new_effect=effect,
                    old_reasons=row.reasons,
                    new_reasons=reasons,
                    exact=exact,
                )
            )


async def run(
    database: Database,
    the_plan: Plan,
    *,
    limits: InputLimits,
    eval_timeout: float,
    progress: Progress | None = None,
) -> ImpactReport:
    """Replay the planned decisions (see the module doc); ``progress(done)`` after each page.

    Raises ``PolicyLoadError`` when the candidate's module cannot be instantiated."""
    from control_plane.policy.engines.wasm import WasmEngine

    started = time.perf_counter()
    tally = _Tally(the_plan.max_listed)
    engine = WasmEngine(timeout=eval_timeout, threads=1, limits=limits)
    done = 0
    try:
        await engine.load(the_plan.candidate)
        after = None
        while done < the_plan.total:
            size = min(PAGE_SIZE, the_plan.total - done)
            async with database.read_sessionmaker() as session:
                page = await decisions.replay_page(
                    session, the_plan.who, the_plan.selection, after=after, limit=size
                )
            if not page:
                break
            for row in page:
                await _replay(engine, row, tally)
            done += len(page)
            after = page[-1].id
            del page  # one page at a time
            if progress is not None:
                progress(done)
    finally:
        await engine.aclose()
    report = ImpactReport(
        bundle=the_plan.bundle,
        revision=the_plan.revision,
        total=done,
        replayed=tally.replayed,
        compared=tally.compared,
        unchanged=tally.unchanged,
        changes=dict(sorted(tally.changes.items())),
        changed=tally.changed,
        changed_truncated=tally.changed_count > len(tally.changed),
        not_exact=tally.not_exact,
        not_exact_decisions=tally.not_exact_listed,
        not_exact_truncated=sum(tally.not_exact.values()) > len(tally.not_exact_listed),
        duration_seconds=round(time.perf_counter() - started, 6),
    )
    log.info(
        "policy_impact_analysed",
        bundle=the_plan.bundle,
        revision=the_plan.revision,
        operator=str(the_plan.who.id),
        total=report.total,
        changed=tally.changed_count,
        duration_seconds=report.duration_seconds,
    )
    return report


async def _replay(engine: Any, row: decisions.ReplayRow, tally: _Tally) -> None:
    if row.input is None:
        tally.inexact(row, "no_input")
        return
    result = await engine.evaluate(row.input)
    tally.replayed += 1
    if GATE_REASONS.intersection(row.reasons):
        tally.inexact(row, "governance_gate")
        return
    exact = not has_markers(row.input)
    if not exact:
        tally.inexact(row, "redacted")
    tally.compared += 1
    effect = str(result.effect)
    if effect == row.effect:
        tally.unchanged += 1
    else:
        tally.change(row, effect, list(result.reasons), exact)

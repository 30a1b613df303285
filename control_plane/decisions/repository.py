"""All SQL for decisions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, or_
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.budgets.rows import BudgetRow
from control_plane.kit.inserts import Row, table_of
from control_plane.kit.prepared import Prepared
from control_plane.models import (
    Agent,
    AgentVersion,
    AuditRedactionList,
    Budget,
    BudgetCounter,
    Credential,
    Decision,
    DecisionReplay,
    PolicyBundle,
    RevokedToken,
)
from control_plane.oauth2.auth_state import (
    AGENT_COLUMNS,
    AuthState,
    agent_from,
    credential_of_agent,
    domain_suspended,
)
from control_plane.policy.canary import Routing


async def get(session: AsyncSession, decision_id: uuid.UUID) -> Decision | None:
    return await session.get(Decision, decision_id)


@dataclass(frozen=True, slots=True)
class RecordedDecision:
    """A decision as ``service.record_decision`` writes it: the columns of ``decisions``.
    A plain record: a ``Decision`` table model instance cost about 0.1 ms to build, on every
    decision, only for its columns to be read back (``row``)."""

    id: uuid.UUID
    agent_id: uuid.UUID
    domain: str
    client_id: uuid.UUID | None
    version_id: uuid.UUID | None
    version: str | None
    action: str
    resource: dict[str, Any]
    input_digest: str
    effect: str
    allow: bool
    reasons: list[str]
    obligations: list[dict[str, Any]]
    bundle: str
    revision: int | None
    engine: str
    failure: str | None
    latency_ms: float
    trace_id: str | None
    enforcement_point_id: uuid.UUID | None
    input: dict[str, Any] | None
    served_by: str | None
    created_at: datetime


_DECISIONS = table_of(Decision)
_COLUMNS = tuple(c.name for c in _DECISIONS.columns)
if set(_COLUMNS) != set(RecordedDecision.__slots__):  # a migration added a column: add it here
    raise RuntimeError("RecordedDecision does not have the columns of the decisions table")


def row(decision: RecordedDecision) -> Row:
    """The decision's row, for its audit record to insert with it (``kit.inserts``: a Core
    insert, no unit of work; one statement with the audit record on PostgreSQL)."""
    return Row(_DECISIONS, {name: getattr(decision, name) for name in _COLUMNS})


@dataclass(frozen=True, slots=True)
class ActiveVersion:
    """The agent's active version, as the decision input and the audit record name it."""

    id: uuid.UUID
    version: str
    state: str
    model_name: str
    model_version: str


@dataclass(frozen=True, slots=True)
class DecisionState:
    """What a decision depends on besides its request, read in one statement.

    ``version`` and ``revision`` (the bundle's active revision number) feed the decision;
    ``redaction`` is the domain's audit redaction list (its field patterns, [] when none) and
    ``budgets`` the rows of the budgets that apply to the agent (its own and its domain's, one
    ``BudgetRow`` per window counter), so that neither costs a statement of its own;
    ``guard`` is everything that, changed, makes a decision taken on the earlier read stale (the
    agent's row version and status, the credential's revocation, expiry and bound version's
    state, the token's revocation, the active version, the active revision, the redaction
    list, the budgets' limits, the domain's suspension). Budget use is not in it: it changes
    with every decision, and consuming re-checks it on the row (``budgets.repository.consume``).
    ``auth`` is what authentication re-checks under a valid token (``oauth2``), read with the
    rest so that a decision's authentication costs no statement of its own; None when the
    credential is not the agent's."""

    version: ActiveVersion | None
    revision: int | None
    redaction: list[str]
    guard: tuple[Any, ...]
    routing: Routing
    budgets: tuple[BudgetRow, ...] = field(default=(), compare=False)
    auth: AuthState | None = field(default=None, compare=False)


def _decision_state_statement() -> Any:
    """Built once (bound parameters), so no call pays for building, aliasing or cache keys."""
    active = aliased(AgentVersion)
    bound = aliased(AgentVersion)
    return (
        sa_select(
            *AGENT_COLUMNS,
            col(Agent.revision),
            col(Agent.status),
            col(active.id),
            col(active.version),
            col(active.state),
            col(active.model_name),
            col(active.model_version),
            col(Credential.revoked_at),
            col(Credential.expires_at),
            col(bound.state),
            col(PolicyBundle.active_revision),
            exists().where(col(RevokedToken.jti) == bindparam("jti")),
            sa_select(col(AuditRedactionList.fields))
            .where(col(AuditRedactionList.domain) == col(Agent.domain))
            .scalar_subquery(),
            # The canary and the shadow (policy.canary.Routing), read with the rest.
            col(PolicyBundle.canary_revision),
            col(PolicyBundle.canary_basis_points),
            col(PolicyBundle.canary_domains),
            col(PolicyBundle.shadow_revision),
            # Authentication's (oauth2.auth_state.AuthState): the credential is the agent's,
            # and the domain's kill switch.
            col(Credential.id),
            domain_suspended(),
            # The budgets that apply, a row per window counter (at most two budgets of three).
            col(Budget.scope),
            col(Budget.key),
            col(Budget.actions_per_minute),
            col(Budget.actions_per_hour),
            col(Budget.spend_per_day),
            col(Budget.spend_field),
            col(BudgetCounter.window),
            col(BudgetCounter.window_start),
            col(BudgetCounter.used),
        )
        .select_from(Agent)
        .outerjoin(
            active, and_(col(active.agent_id) == col(Agent.id), col(active.state) == "active")
        )
        .outerjoin(Credential, credential_of_agent())
        .outerjoin(bound, col(bound.id) == col(Credential.version_id))
        .outerjoin(PolicyBundle, col(PolicyBundle.name) == bindparam("bundle"))
        .outerjoin(
            Budget,
            or_(
                and_(col(Budget.scope) == "agent", col(Budget.key) == bindparam("agent_key")),
                and_(col(Budget.scope) == "domain", col(Budget.key) == col(Agent.domain)),
            ),
        )
        .outerjoin(
            BudgetCounter,
            and_(
                col(BudgetCounter.scope) == col(Budget.scope),
                col(BudgetCounter.key) == col(Budget.key),
            ),
        )
        .where(col(Agent.id) == bindparam("agent_id"))
    )


_DECISION_STATE = Prepared(_decision_state_statement())
# Row layout: the agent's columns, then these columns, then the budget columns from _BUDGET on.
_AGENT_END = len(AGENT_COLUMNS)
_BUDGET = _AGENT_END + 19


async def decision_state(
    session: AsyncSession, agent_id: uuid.UUID, client_id: uuid.UUID, jti: str, bundle: str
) -> DecisionState | None:
    """The agent's active version, the bundle's active revision, the domain's redaction list,
    the budgets that apply, authentication's state and the guard; None when the agent is gone.
    One statement (``kit.prepared``: Core, and on SQLite run with the driver): its columns up
    to ``_BUDGET`` are the same on every row, one row per budget window counter."""
    params = {
        "agent_id": agent_id,
        "agent_key": str(agent_id),
        "client_id": client_id,
        "jti": jti,
        "bundle": bundle,
    }
    rows = await _DECISION_STATE.rows(session, params)
    if not rows:
        return None
    agent = agent_from(rows[0])
    row = rows[0][_AGENT_END:]
    version = ActiveVersion(*row[2:7]) if row[2] is not None else None
    routing = Routing(
        active=row[10],
        canary=row[13],
        basis_points=row[14],
        domains=tuple(row[15] or ()),
        shadow=row[16],
    )
    budgets = tuple(BudgetRow(*r[_BUDGET:]) for r in rows if r[_BUDGET] is not None)
    auth = (
        AuthState.from_columns(agent, row[7], row[8], row[9], row[11], row[18])
        if row[17] is not None
        else None
    )
    return DecisionState(
        version=version,
        revision=row[10],
        redaction=list(row[12] or ()),
        guard=(
            *row[:15],
            routing.domains,
            row[16],
            row[17],
            bool(row[18]),
            frozenset(b.limits for b in budgets),
        ),
        routing=routing,
        budgets=budgets,
        auth=auth,
    )


async def list_page(
    session: AsyncSession,
    *,
    visible: frozenset[str] | None,
    agent_id: uuid.UUID | None,
    effect: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Decision]:
    stmt = select(Decision).order_by(col(Decision.id)).limit(limit + 1)
    if visible is not None:
        stmt = stmt.where(col(Decision.domain).in_(sorted(visible)))
    if agent_id is not None:
        stmt = stmt.where(Decision.agent_id == agent_id)
    if effect is not None:
        stmt = stmt.where(Decision.effect == effect)
    if action is not None:
        stmt = stmt.where(Decision.action == action)
    if since is not None:
        stmt = stmt.where(col(Decision.created_at) >= since)
    if until is not None:
        stmt = stmt.where(col(Decision.created_at) < until)
    if after is not None:
        stmt = stmt.where(col(Decision.id) > after)
    return (await session.exec(stmt)).all()


def _vouched_state_statement() -> Any:
    active = aliased(AgentVersion)
    revision = (
        sa_select(col(PolicyBundle.active_revision))
        .where(col(PolicyBundle.name) == bindparam("bundle"))
        .scalar_subquery()
    )
    return (
        sa_select(Agent, active, Credential, revision)
        .select_from(Agent)
        .outerjoin(
            active, and_(col(active.agent_id) == col(Agent.id), col(active.state) == "active")
        )
        .outerjoin(Credential, col(Credential.id) == bindparam("client_id"))
        .where(col(Agent.id) == bindparam("agent_id"))
        .execution_options(populate_existing=True)
    )


_VOUCHED_STATE = _vouched_state_statement()


async def vouched_state(
    session: AsyncSession, agent_id: uuid.UUID, client_id: uuid.UUID, bundle: str
) -> tuple[Agent | None, AgentVersion | None, Credential | None, int | None]:
    """The rows a decision was decided on: agent, its active version, the credential, and the
    bundle's active revision number (one statement; the rows read fresh)."""
    params = {"agent_id": agent_id, "client_id": client_id, "bundle": bundle}
    row = (await session.exec(_VOUCHED_STATE, params=params)).first()
    if row is None:
        return None, None, None, None
    agent, version, credential, revision = row
    return agent, version, credential, revision


async def add_replay(session: AsyncSession, replay: DecisionReplay) -> None:
    session.add(replay)
    await session.flush()


async def list_replays(
    session: AsyncSession,
    decision_id: uuid.UUID,
    *,
    visible: frozenset[str] | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[DecisionReplay]:
    stmt = (
        select(DecisionReplay)
        .where(DecisionReplay.decision_id == decision_id)
        .order_by(col(DecisionReplay.id))
        .limit(limit + 1)
    )
    if visible is not None:
        stmt = stmt.where(col(DecisionReplay.domain).in_(sorted(visible)))
    if after is not None:
        stmt = stmt.where(col(DecisionReplay.id) > after)
    return (await session.exec(stmt)).all()


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """Which decisions an impact analysis replays (all optional; ``visible`` None: all domains).
    ``since`` inclusive, ``until`` exclusive."""

    visible: frozenset[str] | None
    domain: str | None = None
    agent_id: uuid.UUID | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReplayRow:
    """What a replay needs of a decision, and nothing more (no resource, no obligations)."""

    id: uuid.UUID
    effect: str
    reasons: list[str]
    input: dict[str, Any] | None


def _replay_where(stmt: Any, f: ReplayFilter) -> Any:
    if f.visible is not None:
        stmt = stmt.where(col(Decision.domain).in_(sorted(f.visible)))
    if f.domain is not None:
        stmt = stmt.where(col(Decision.domain) == f.domain)
    if f.agent_id is not None:
        stmt = stmt.where(col(Decision.agent_id) == f.agent_id)
    if f.action is not None:
        stmt = stmt.where(col(Decision.action) == f.action)
    if f.since is not None:
        stmt = stmt.where(col(Decision.created_at) >= f.since)
    if f.until is not None:
        stmt = stmt.where(col(Decision.created_at) < f.until)
    return stmt


async def count_for_replay(session: AsyncSession, f: ReplayFilter, cap: int) -> int:
    """How many decisions match ``f``, counting at most ``cap`` (the scan stops there)."""
    ids = _replay_where(sa_select(col(Decision.id)), f).limit(cap).subquery()
    counted: Any = sa_select(func.count()).select_from(ids)
    return int((await session.exec(counted)).one()[0])


async def replay_page(
    session: AsyncSession, f: ReplayFilter, *, after: uuid.UUID | None, limit: int
) -> list[ReplayRow]:
    """Up to ``limit`` decisions matching ``f`` with ids above ``after``, by id (keyset)."""
    stmt = sa_select(
        col(Decision.id), col(Decision.effect), col(Decision.reasons), col(Decision.input)
    )
    stmt = _replay_where(stmt, f).order_by(col(Decision.id)).limit(limit)
    if after is not None:
        stmt = stmt.where(col(Decision.id) > after)
    rows = (await session.exec(stmt)).all()
    return [ReplayRow(r[0], r[1], list(r[2]), r[3]) for r in rows]

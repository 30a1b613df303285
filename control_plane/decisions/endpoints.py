from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Query, Request, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.auth.dependencies import CurrentOperator
from control_plane.decisions import service
from control_plane.decisions.replay import DecisionReplayGuard
from control_plane.decisions.schemas import (
    DecisionRecord,
    DecisionReplayRecord,
    DecisionRequest,
    DecisionResult,
)
from control_plane.kit.errors import error_responses
from control_plane.kit.pagination import Page, Pagination
from control_plane.kit.router import Router
from control_plane.kit.routing import Session, idempotent, reads_first
from control_plane.kit.schemas import RFC3339DateTime
from control_plane.kit.time import aware
from control_plane.oauth2.agent_auth import AgentPrincipal, require_scope
from control_plane.oauth2.auth_state import AuthState
from control_plane.policy.engines import Effect
from control_plane.policy.shadow import ShadowJob
from control_plane.state import State, app_state

router = Router(tag="decisions", prefix="/v1/decisions", errors=(401, 403, 422))


async def _read_state(
    request: Request, session: AsyncSession, client_id: uuid.UUID, agent_id: uuid.UUID, jti: str
) -> AuthState | None:
    """Authentication's state, read with the rest of the decision's in one statement and kept
    for ``service.decide`` (``request.state.decision_state``)."""
    bundle = app_state(request.app).policy_runtime.bundle
    prefetched = await service.prefetch(session, agent_id, client_id, jti, bundle)
    request.state.decision_state = prefetched
    return prefetched.state.auth if prefetched is not None else None


_decider = require_scope("decisions:create", read_state=_read_state)
Decider = Annotated[AgentPrincipal, Depends(_decider)]


def _utc(value: datetime | None) -> datetime | None:
    # RFC3339DateTime refused a time with no UTC equivalent (422), so this cannot overflow.
    return None if value is None else aware(value)


@router.post(
    "",
    # A replay is valid only while the state it was decided on is unchanged; each is recorded.
    dependencies=[idempotent(_decider, DecisionReplayGuard())],
    responses=error_responses(409),
)
@reads_first  # SQLite: the writer turn is taken after evaluation, for the inserts only
async def create_decision(
    body: DecisionRequest,
    agent: Decider,
    session: Session,
    state: State,
    response: Response,
    background: BackgroundTasks,
    request: Request,
) -> DecisionResult:
    """Ask whether the calling agent may take an action (agent token, decisions:create)."""
    shadow_jobs: list[ShadowJob] = []
    result = await service.decide(
        session,
        state.policy_runtime,
        agent,
        body,
        state.input_limits,
        state.redaction_key,
        state.audit_context,
        shadow_jobs,
        getattr(request.state, "decision_state", None),
    )
    # Runs once the answer is committed and sent: a non-blocking put (policy.shadow).
    for job in shadow_jobs:
        background.add_task(state.shadow_evaluator.submit, job)
    if result.retry_after is not None:
        response.headers["Retry-After"] = str(result.retry_after)
    return result


@router.get("")
async def list_decisions(
    who: CurrentOperator,
    session: Session,
    page: Pagination,
    agent_id: uuid.UUID | None = None,
    effect: Effect | None = None,
    action: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[
        RFC3339DateTime | None, Query(description="Decided at or after (RFC 3339).")
    ] = None,
    until: Annotated[
        RFC3339DateTime | None, Query(description="Decided before (RFC 3339).")
    ] = None,
) -> Page[DecisionRecord]:
    """List recorded decisions visible to the caller, oldest first."""
    since, until = _utc(since), _utc(until)
    rows = await service.list_decisions(
        session,
        who,
        agent_id=agent_id,
        effect=effect.value if effect else None,
        action=action,
        since=since,
        until=until,
        after=page.after,
        limit=page.limit,
    )
    return Page[DecisionRecord].of(rows, page.limit)


@router.get("/{decision_id}/replays", responses=error_responses(404))
async def list_replays(
    decision_id: uuid.UUID, who: CurrentOperator, session: Session, page: Pagination
) -> Page[DecisionReplayRecord]:
    """List the replays of a decision by its Idempotency-Key, oldest first."""
    rows = await service.list_replays(session, who, decision_id, after=page.after, limit=page.limit)
    return Page[DecisionReplayRecord].of(rows, page.limit)

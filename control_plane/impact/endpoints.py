"""HTTP for impact analysis: parse, authorise, call the service (see ``service`` and ``jobs``)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Path
from fastapi.responses import JSONResponse

from control_plane.auth.dependencies import CurrentOperator, OperatorIdempotent
from control_plane.impact import service
from control_plane.impact.schemas import ImpactJob, ImpactReport, ImpactRequest
from control_plane.kit.errors import error_responses
from control_plane.kit.router import Router
from control_plane.kit.routing import Session, reads_first
from control_plane.kit.schemas import NAME_PATTERN
from control_plane.kit.time import utcnow
from control_plane.state import State

router = Router(tag="policies", prefix="/v1/policies", errors=(401, 403, 404, 422))

BundleName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)]
RevisionNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post(
    "/{bundle}/revisions/{revision}/impact",
    response_model=ImpactReport,
    # A retried request with the same key gets the same report, or the same job (never a second).
    dependencies=[OperatorIdempotent],
    responses={
        202: {"model": ImpactJob, "description": "Started as a background job."},
        **error_responses(409, 429),
    },
)
@reads_first  # only reads: on SQLite the writer turn is never taken
async def analyse_impact(
    bundle: BundleName,
    revision: RevisionNumber,
    body: ImpactRequest,
    who: CurrentOperator,
    session: Session,
    state: State,
) -> ImpactReport | JSONResponse:
    """Replay stored decisions against a revision and report what it changes (202: a job)."""
    plan = await service.plan(session, who, bundle, revision, body, utcnow())
    settings = state.settings

    async def work(progress: service.Progress | None = None) -> ImpactReport:
        return await service.run(
            state.database,
            plan,
            limits=state.input_limits,
            eval_timeout=settings.policy_timeout_seconds,
            progress=progress,
        )

    if not body.background and plan.total <= service.INLINE_MAX:
        return await work()
    job = state.impact_jobs.start(who.id, bundle, revision, plan.total, work)
    return JSONResponse(
        job.model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/v1/policies/{bundle}/revisions/{revision}/impact/{job.id}"},
    )


@router.get("/{bundle}/revisions/{revision}/impact/{job}")
async def get_impact_job(
    bundle: BundleName, revision: RevisionNumber, job: uuid.UUID, who: CurrentOperator, state: State
) -> ImpactJob:
    """A background impact analysis: progress (done of total), and its report once finished."""
    return state.impact_jobs.get(who.id, job, bundle, revision)

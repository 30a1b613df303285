from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from control_plane.kit import dberrors
from control_plane.kit.errors import ServiceUnavailable, error_responses
from control_plane.migrate import current_revision

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    database: str | None = None
    migration: str | None = None


@router.get("/healthz", operation_id="health-live", response_model_exclude_none=True)
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", operation_id="health-ready", responses=error_responses(503))
async def readyz(request: Request) -> Health:
    """The database is reachable, its migrations are current and the policy engine is loaded."""
    state = request.app.state
    try:
        current = await current_revision(state.engine)
    except (SQLAlchemyError, OSError) as exc:
        # Any failure to read the revision means: do not route traffic here yet.
        found = dberrors.report(exc, request)
        cause = found.cause if found else dberrors.Cause.unreachable
        raise dberrors.DatabaseUnavailable(
            cause,
            f"The database ({state.engine.dialect.name}) is unavailable: {cause.value}.",
        ) from exc
    if current != state.migration_head:
        raise ServiceUnavailable(
            f"Database migration {current} is not the expected {state.migration_head}; "
            "run `agentctl migrate`."
        )
    async with state.read_sessionmaker() as session:
        problem = await state.policy_runtime.ready(session)
    if problem is not None:
        raise ServiceUnavailable(f"The policy engine is not ready: {problem}.")
    return Health(status="ok", database=state.engine.dialect.name, migration=current)

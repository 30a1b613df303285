from __future__ import annotations

from fastapi import Request
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from control_plane import __version__
from control_plane.kit import dberrors
from control_plane.kit.errors import ServiceUnavailable, error_responses
from control_plane.kit.router import Router
from control_plane.migrate import current_revision
from control_plane.state import State

router = Router(tag="health", transactional=False)


class Health(BaseModel):
    status: str
    version: str = Field(
        default=__version__, description="The server's version (agentctl --version)."
    )
    database: str | None = None
    migration: str | None = None


@router.get("/healthz", response_model_exclude_none=True)
async def live() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", responses=error_responses(503))
async def ready(request: Request, state: State) -> Health:
    """The database is reachable, its migrations are current and the policy engine is loaded."""
    engine = state.database.engine
    try:
        current = await current_revision(engine)
    except (SQLAlchemyError, OSError) as exc:
        # Any failure to read the revision means: do not route traffic here yet.
        found = dberrors.report(exc, request)
        cause = found.cause if found else dberrors.Cause.unreachable
        raise dberrors.DatabaseUnavailable(
            cause,
            f"The database ({engine.dialect.name}) is unavailable: {cause.value}.",
        ) from exc
    if current != state.migration_head:
        raise ServiceUnavailable(
            f"Database migration {current} is not the expected {state.migration_head}; "
            "run `agentctl migrate`."
        )
    async with state.database.read_sessionmaker() as session:
        problem = await state.policy_runtime.ready(session)
    if problem is not None:
        raise ServiceUnavailable(f"The policy engine is not ready: {problem}.")
    return Health(status="ok", database=engine.dialect.name, migration=current)

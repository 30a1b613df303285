from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from control_plane.kit.errors import ServiceUnavailable, error_responses
from control_plane.kit.router import Router
from control_plane.migrate import current_revision
from control_plane.state import State

router = Router(tag="health", transactional=False)


class Health(BaseModel):
    status: str
    database: str | None = None
    migration: str | None = None


@router.get("/healthz", response_model_exclude_none=True)
async def live() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", responses=error_responses(503))
async def ready(state: State) -> Health:
    """The database is reachable, its migrations are current and the policy engine is loaded."""
    engine = state.database.engine
    try:
        current = await current_revision(engine)
    except (SQLAlchemyError, OSError) as exc:
        raise ServiceUnavailable(f"The database is unreachable ({type(exc).__name__}).") from exc
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

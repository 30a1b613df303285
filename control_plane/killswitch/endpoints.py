from __future__ import annotations

from typing import Annotated

from fastapi import Path

from control_plane.auth.dependencies import CurrentOperator, OperatorIdempotent
from control_plane.domains.schemas import DomainPublic
from control_plane.killswitch import service
from control_plane.kit.errors import error_responses
from control_plane.kit.router import Router
from control_plane.kit.routing import Session
from control_plane.kit.schemas import NAME_PATTERN
from control_plane.state import State

router = Router(tag="domains", prefix="/v1/domains", errors=(401, 403, 404, 422))

DomainName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)]


@router.post("/{name}/suspend", dependencies=[OperatorIdempotent], responses=error_responses(409))
async def suspend_domain(
    name: DomainName, who: CurrentOperator, session: Session, state: State
) -> DomainPublic:
    """Kill switch: refuse every agent of the domain (tokens, decisions) within 1 s."""
    domain = await service.set_domain(session, state.audit_context, who, name, suspend=True)
    return DomainPublic.model_validate(domain)


@router.post("/{name}/resume", dependencies=[OperatorIdempotent], responses=error_responses(409))
async def resume_domain(
    name: DomainName, who: CurrentOperator, session: Session, state: State
) -> DomainPublic:
    """Turn the domain's kill switch off (agents suspended on their own stay suspended)."""
    domain = await service.set_domain(session, state.audit_context, who, name, suspend=False)
    return DomainPublic.model_validate(domain)

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Response

from control_plane.auth.dependencies import CurrentOperator, OperatorIdempotent
from control_plane.domains import service
from control_plane.domains.schemas import DomainCreate, DomainPublic
from control_plane.kit.errors import error_responses
from control_plane.kit.pagination import Page
from control_plane.kit.router import Router
from control_plane.kit.routing import Session
from control_plane.kit.schemas import NAME_PATTERN

router = Router(tag="domains", prefix="/v1/domains", errors=(401, 403, 422))

DomainName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)]


@router.post(
    "",
    status_code=201,
    dependencies=[OperatorIdempotent],
    responses=error_responses(409),
)
async def create_domain(
    body: DomainCreate, who: CurrentOperator, session: Session, response: Response
) -> DomainPublic:
    """Create a domain (platform_admin)."""
    domain = await service.create(session, who, body)
    response.headers["Location"] = f"/v1/domains/{domain.name}"
    return DomainPublic.model_validate(domain)


@router.get("")
async def list_domains(
    who: CurrentOperator,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str | None, Query(max_length=63, description="Last name seen.")] = None,
) -> Page[DomainPublic, str]:
    """List the domains visible to the caller."""
    return await service.list_domains(session, who, after=after, limit=limit)


@router.get("/{name}", responses=error_responses(404))
async def get_domain(name: DomainName, who: CurrentOperator, session: Session) -> DomainPublic:
    """Get one domain."""
    return DomainPublic.model_validate(await service.get(session, who, name))

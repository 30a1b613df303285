from __future__ import annotations

import uuid

from fastapi import Response

from control_plane.auth.dependencies import CurrentOperator, OperatorIdempotent
from control_plane.kit.errors import error_responses
from control_plane.kit.pagination import Page, Pagination
from control_plane.kit.router import Router
from control_plane.kit.routing import Session
from control_plane.operators import service
from control_plane.operators.schemas import (
    OperatorCreate,
    OperatorCreated,
    OperatorPublic,
)

router = Router(tag="operators", prefix="/v1/operators", errors=(401, 403, 422))


@router.post(
    "",
    status_code=201,
    dependencies=[OperatorIdempotent],
    responses=error_responses(409),
)
async def create_operator(
    body: OperatorCreate, who: CurrentOperator, session: Session, response: Response
) -> OperatorCreated:
    """Create an operator token (platform_admin); the token is in this response only."""
    created = await service.create_by(
        session, who, name=body.name, role=body.role, domain_names=body.domains
    )
    response.headers["Location"] = f"/v1/operators/{created.operator.id}"
    response.headers["Cache-Control"] = "no-store"
    return OperatorCreated.model_validate(
        {**OperatorPublic.model_validate(created.operator).model_dump(), "token": created.token}
    )


@router.get("")
async def list_operators(
    who: CurrentOperator, session: Session, page: Pagination
) -> Page[OperatorPublic]:
    """List operators (platform_admin); tokens are never shown."""
    rows = await service.list_operators(session, who, after=page.after, limit=page.limit)
    return Page[OperatorPublic].of(rows, page.limit)


@router.get("/{operator_id}", responses=error_responses(404))
async def get_operator(
    operator_id: uuid.UUID, who: CurrentOperator, session: Session
) -> OperatorPublic:
    """Get one operator."""
    return OperatorPublic.model_validate(await service.get(session, who, operator_id))


@router.post(
    "/{operator_id}/revoke",
    dependencies=[OperatorIdempotent],
    responses=error_responses(404, 409),
)
async def revoke_operator(
    operator_id: uuid.UUID, who: CurrentOperator, session: Session
) -> OperatorPublic:
    """Revoke an operator's token at once."""
    return OperatorPublic.model_validate(await service.revoke(session, who, operator_id))

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from control_plane.auth.dependencies import CurrentOperator, OperatorIdempotent
from control_plane.kit.errors import error_responses
from control_plane.kit.pagination import Pagination, page_fields
from control_plane.kit.routing import Session, TransactionalRoute
from control_plane.operators import service
from control_plane.operators.schemas import (
    OperatorCreate,
    OperatorCreated,
    OperatorList,
    OperatorPublic,
)

router = APIRouter(
    prefix="/v1/operators",
    tags=["operators"],
    route_class=TransactionalRoute,
    responses=error_responses(401, 403, 422),
)


@router.post(
    "",
    status_code=201,
    operation_id="operators-create",
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


@router.get("", operation_id="operators-list")
async def list_operators(who: CurrentOperator, session: Session, page: Pagination) -> OperatorList:
    """List operators (platform_admin); tokens are never shown."""
    rows = await service.list_operators(session, who, after=page.after, limit=page.limit)
    return OperatorList(**page_fields(rows, page.limit, OperatorPublic))


@router.get("/{operator_id}", operation_id="operators-get", responses=error_responses(404))
async def get_operator(
    operator_id: uuid.UUID, who: CurrentOperator, session: Session
) -> OperatorPublic:
    """Get one operator."""
    return OperatorPublic.model_validate(await service.get(session, who, operator_id))


@router.post(
    "/{operator_id}/revoke",
    operation_id="operators-revoke",
    dependencies=[OperatorIdempotent],
    responses=error_responses(404, 409),
)
async def revoke_operator(
    operator_id: uuid.UUID, who: CurrentOperator, session: Session
) -> OperatorPublic:
    """Revoke an operator's token at once."""
    return OperatorPublic.model_validate(await service.revoke(session, who, operator_id))

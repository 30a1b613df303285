from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from control_plane.agents.schemas import AgentPublic
from control_plane.auth.dependencies import CurrentOperator, OperatorIdempotent
from control_plane.credentials import service
from control_plane.credentials.agent_auth import CurrentAgent
from control_plane.credentials.schemas import (
    CredentialCreate,
    CredentialCreated,
    CredentialList,
    CredentialPublic,
)
from control_plane.kit.errors import error_responses
from control_plane.kit.pagination import Pagination, page_fields
from control_plane.kit.routing import Session, TransactionalRoute

router = APIRouter(
    prefix="/v1/agents",
    tags=["credentials"],
    route_class=TransactionalRoute,
    responses=error_responses(401, 403, 404, 422),
)

#: Routes an agent calls with its own token. Included before the registry's /v1/agents/{id}.
self_router = APIRouter(prefix="/v1/agents", tags=["agents"], route_class=TransactionalRoute)


@self_router.get("/me", operation_id="agents-me", responses=error_responses(401))
async def get_me(agent: CurrentAgent) -> AgentPublic:
    """The calling agent's own record (agent token)."""
    return AgentPublic.model_validate(agent.agent)


@router.post(
    "/{agent_id}/credentials",
    status_code=201,
    operation_id="credentials-create",
    dependencies=[OperatorIdempotent],
    responses=error_responses(409),
)
async def create_credential(
    agent_id: uuid.UUID,
    body: CredentialCreate,
    who: CurrentOperator,
    session: Session,
    response: Response,
) -> CredentialCreated:
    """Create an OAuth2 client for the agent; a client secret is shown in this response only."""
    created = await service.create_credential(session, who, agent_id, body)
    response.headers["Location"] = f"/v1/agents/{agent_id}/credentials/{created.credential.id}"
    response.headers["Cache-Control"] = "no-store"
    public = CredentialPublic.model_validate(created.credential)
    return CredentialCreated(**public.model_dump(), client_secret=created.client_secret)


@router.get("/{agent_id}/credentials", operation_id="credentials-list")
async def list_credentials(
    agent_id: uuid.UUID, who: CurrentOperator, session: Session, page: Pagination
) -> CredentialList:
    """List the agent's credentials; secrets are never shown."""
    rows = await service.list_credentials(
        session, who, agent_id, after=page.after, limit=page.limit
    )
    return CredentialList(**page_fields(rows, page.limit, CredentialPublic))


@router.post(
    "/{agent_id}/credentials/{client_id}/revoke",
    operation_id="credentials-revoke",
    dependencies=[OperatorIdempotent],
    responses=error_responses(409),
)
async def revoke_credential(
    agent_id: uuid.UUID, client_id: uuid.UUID, who: CurrentOperator, session: Session
) -> CredentialPublic:
    """Revoke a credential: its tokens stop working at once."""
    credential = await service.revoke_credential(session, who, agent_id, client_id)
    return CredentialPublic.model_validate(credential)

from __future__ import annotations

import uuid

from fastapi import Response

from control_plane.agents.schemas import AgentPublic
from control_plane.auth.dependencies import CurrentOperator, OperatorIdempotent
from control_plane.credentials import service
from control_plane.credentials.schemas import (
    CredentialCreate,
    CredentialCreated,
    CredentialPublic,
)
from control_plane.kit.errors import error_responses
from control_plane.kit.pagination import Page, Pagination
from control_plane.kit.router import Router
from control_plane.kit.routing import Session
from control_plane.oauth2.agent_auth import CurrentAgent

router = Router(tag="credentials", prefix="/v1/agents", errors=(401, 403, 404, 422))

#: Routes an agent calls with its own token (``api.py`` includes it before /v1/agents/{id}).
self_router = Router(tag="agents", prefix="/v1/agents")


@self_router.get("/me", responses=error_responses(401))
async def me(agent: CurrentAgent) -> AgentPublic:
    """The calling agent's own record (agent token)."""
    return AgentPublic.model_validate(agent.agent)


@router.post(
    "/{agent_id}/credentials",
    status_code=201,
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


@router.get("/{agent_id}/credentials")
async def list_credentials(
    agent_id: uuid.UUID, who: CurrentOperator, session: Session, page: Pagination
) -> Page[CredentialPublic]:
    """List the agent's credentials; secrets are never shown."""
    rows = await service.list_credentials(
        session, who, agent_id, after=page.after, limit=page.limit
    )
    return Page[CredentialPublic].of(rows, page.limit)


@router.post(
    "/{agent_id}/credentials/{client_id}/revoke",
    dependencies=[OperatorIdempotent],
    responses=error_responses(409),
)
async def revoke_credential(
    agent_id: uuid.UUID, client_id: uuid.UUID, who: CurrentOperator, session: Session
) -> CredentialPublic:
    """Revoke a credential: its tokens stop working at once."""
    credential = await service.revoke_credential(session, who, agent_id, client_id)
    return CredentialPublic.model_validate(credential)

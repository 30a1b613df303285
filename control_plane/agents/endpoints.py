from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import Header, Query, Response

from control_plane.agents import service
from control_plane.agents.schemas import (
    AgentCreate,
    AgentPublic,
    AgentStatus,
    AgentUpdate,
    LabelFilter,
    VersionCreate,
    VersionPublic,
)
from control_plane.auth.dependencies import CurrentOperator, OperatorIdempotent
from control_plane.killswitch import service as killswitch
from control_plane.kit.errors import FieldError, ValidationFailed, error_responses
from control_plane.kit.etag import etag
from control_plane.kit.pagination import Page, Pagination
from control_plane.kit.router import Router
from control_plane.kit.routing import Session
from control_plane.kit.schemas import NAME_PATTERN
from control_plane.models import Agent, AgentVersion
from control_plane.state import State

router = Router(tag="agents", prefix="/v1/agents", errors=(401, 403, 404, 422))

IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", description="The ETag from your last read of the agent."),
]


def _agent(agent: Agent, response: Response) -> AgentPublic:
    response.headers["ETag"] = etag(agent.revision)
    return AgentPublic.model_validate(agent)


MAX_LABEL_FILTERS = 16
_LABEL_KEY = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9._/-]{0,61}[a-zA-Z0-9])?$")
_LABEL_VALUE = re.compile(r"^[^\x00-\x1f\x7f]{0,63}$")


def _parse_labels(values: list[str]) -> dict[str, str]:
    """``key=value`` filters, refused (422) unless each could be a stored label (the key and
    value rules of ``Labels``) and there are at most ``MAX_LABEL_FILTERS``."""
    if len(values) > MAX_LABEL_FILTERS:
        raise ValidationFailed(
            f"At most {MAX_LABEL_FILTERS} label filters.",
            errors=[FieldError(pointer="/query/label", detail="too many label filters")],
        )
    labels: dict[str, str] = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise ValidationFailed(
                "Label filters look like key=value, with a valid label key and value.",
                errors=[FieldError(pointer="/query/label", detail="expected key=value")],
            )
        labels[key] = value
    return labels


@router.post(
    "",
    status_code=201,
    dependencies=[OperatorIdempotent],
    responses=error_responses(409),
)
async def create_agent(
    body: AgentCreate, who: CurrentOperator, session: Session, response: Response
) -> AgentPublic:
    """Register an agent in a domain."""
    agent = await service.create(session, who, body)
    response.headers["Location"] = f"/v1/agents/{agent.id}"
    return _agent(agent, response)


@router.get("")
async def list_agents(
    who: CurrentOperator,
    session: Session,
    page: Pagination,
    domain: Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=63)] = None,
    status: AgentStatus | None = None,
    label: Annotated[
        list[LabelFilter], Query(description="key=value; repeat to require several labels.")
    ] = [],  # noqa: B006 - FastAPI copies query defaults
) -> Page[AgentPublic]:
    """List agents visible to the caller, newest last, with filters."""
    rows = await service.list_agents(
        session,
        who,
        domain=domain,
        status=status,
        labels=_parse_labels(label),
        after=page.after,
        limit=page.limit,
    )
    return Page[AgentPublic].of(rows, page.limit)


@router.get("/{agent_id}")
async def get_agent(
    agent_id: uuid.UUID, who: CurrentOperator, session: Session, response: Response
) -> AgentPublic:
    """Get one agent; the ETag header is what a later update sends as If-Match."""
    return _agent(await service.get(session, who, agent_id), response)


@router.patch(
    "/{agent_id}",
    responses=error_responses(400, 409, 412, 428),
)
async def update_agent(
    agent_id: uuid.UUID,
    body: AgentUpdate,
    who: CurrentOperator,
    session: Session,
    response: Response,
    if_match: IfMatch = None,
) -> AgentPublic:
    """Update owner, description, autonomy level or labels; requires If-Match."""
    agent = await service.update(session, who, agent_id, body, if_match)
    return _agent(agent, response)


def _lifecycle(action: str, summary: str) -> None:
    async def endpoint(
        agent_id: uuid.UUID,
        who: CurrentOperator,
        session: Session,
        response: Response,
        state: State,
        if_match: IfMatch = None,
    ) -> AgentPublic:
        agent = await killswitch.transition_agent(
            session, state.audit_context, who, agent_id, action, if_match
        )
        return _agent(agent, response)

    endpoint.__doc__ = summary
    router.add_api_route(
        f"/{{agent_id}}/{action}",
        endpoint,
        methods=["POST"],
        name=f"{action}_agent",
        dependencies=[OperatorIdempotent],
        responses=error_responses(400, 409, 412),
        response_model=AgentPublic,
    )


_lifecycle("suspend", "Suspend an active agent: its tokens stop working.")
_lifecycle("resume", "Resume a suspended agent.")
_lifecycle("retire", "Retire an agent for good (final).")


def _version(version: AgentVersion) -> VersionPublic:
    return VersionPublic.model_validate(version)


@router.post(
    "/{agent_id}/versions",
    status_code=201,
    dependencies=[OperatorIdempotent],
    responses=error_responses(409),
)
async def register_version(
    agent_id: uuid.UUID,
    body: VersionCreate,
    who: CurrentOperator,
    session: Session,
    response: Response,
) -> VersionPublic:
    """Register a version of the agent's code and model."""
    version = await service.register_version(session, who, agent_id, body)
    response.headers["Location"] = f"/v1/agents/{agent_id}/versions/{version.id}"
    return _version(version)


@router.get("/{agent_id}/versions")
async def list_versions(
    agent_id: uuid.UUID, who: CurrentOperator, session: Session, page: Pagination
) -> Page[VersionPublic]:
    """List the agent's versions, oldest first."""
    rows = await service.list_versions(session, who, agent_id, after=page.after, limit=page.limit)
    return Page[VersionPublic].of(rows, page.limit)


@router.get("/{agent_id}/versions/{version_id}")
async def get_version(
    agent_id: uuid.UUID, version_id: uuid.UUID, who: CurrentOperator, session: Session
) -> VersionPublic:
    """Get one version."""
    return _version(await service.get_version(session, who, agent_id, version_id))


def _version_action(action: str, summary: str) -> None:
    async def endpoint(
        agent_id: uuid.UUID,
        version_id: uuid.UUID,
        who: CurrentOperator,
        session: Session,
        state: State,
    ) -> VersionPublic:
        separation = state.settings.version_approval_separation
        return _version(
            await service.transition_version(
                session, who, agent_id, version_id, action, approval_separation=separation
            )
        )

    endpoint.__doc__ = summary
    router.add_api_route(
        f"/{{agent_id}}/versions/{{version_id}}/{action}",
        endpoint,
        methods=["POST"],
        name=f"{action}_version",
        dependencies=[OperatorIdempotent],
        responses=error_responses(409),
        response_model=VersionPublic,
    )


_version_action("approve", "Approve a registered version.")
_version_action("activate", "Activate an approved version; the previously active one steps back.")
_version_action("deprecate", "Deprecate a version (final).")

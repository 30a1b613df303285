from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Path

from control_plane.auth.dependencies import CurrentOperator
from control_plane.budgets import service
from control_plane.budgets.schemas import BudgetPublic, BudgetUpdate
from control_plane.kit.router import Router
from control_plane.kit.routing import Session
from control_plane.kit.schemas import NAME_PATTERN
from control_plane.state import State

router = Router(tag="budgets", prefix="/v1", errors=(401, 403, 404, 422))

DomainName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)]


@router.get("/agents/{agent_id}/budget")
async def get_agent_budget(
    agent_id: uuid.UUID, who: CurrentOperator, session: Session
) -> BudgetPublic:
    """Get an agent's budget and its current use."""
    return await service.get(session, who, "agent", str(agent_id))


@router.put("/agents/{agent_id}/budget")
async def put_agent_budget(
    agent_id: uuid.UUID, body: BudgetUpdate, who: CurrentOperator, session: Session, state: State
) -> BudgetPublic:
    """Set an agent's limits (null removes one); use so far is kept."""
    return await service.put(session, state.audit_context, who, "agent", str(agent_id), body)


@router.get("/domains/{name}/budget")
async def get_domain_budget(
    name: DomainName, who: CurrentOperator, session: Session
) -> BudgetPublic:
    """Get a domain's budget (shared by all its agents) and its current use."""
    return await service.get(session, who, "domain", name)


@router.put("/domains/{name}/budget")
async def put_domain_budget(
    name: DomainName, body: BudgetUpdate, who: CurrentOperator, session: Session, state: State
) -> BudgetPublic:
    """Set a domain's limits (null removes one); use so far is kept."""
    return await service.put(session, state.audit_context, who, "domain", name, body)

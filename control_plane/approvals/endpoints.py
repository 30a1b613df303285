from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query

from control_plane.approvals import service
from control_plane.approvals.schemas import ApprovalPublic, ApprovalState, ApprovalVerdict
from control_plane.auth.dependencies import CurrentOperator, OperatorIdempotent
from control_plane.kit.errors import error_responses
from control_plane.kit.pagination import Page, Pagination
from control_plane.kit.router import Router
from control_plane.kit.routing import Session
from control_plane.kit.schemas import NAME_PATTERN
from control_plane.models import Approval
from control_plane.state import State

router = Router(tag="approvals", prefix="/v1/approvals", errors=(401, 403, 422))


def _public(approval: Approval) -> ApprovalPublic:
    public = ApprovalPublic.model_validate(approval, from_attributes=True)
    return public.model_copy(update={"state": service.state_of(approval)})


@router.get("")
async def list_approvals(
    who: CurrentOperator,
    session: Session,
    page: Pagination,
    state: ApprovalState | None = None,
    domain: Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=63)] = None,
    agent_id: uuid.UUID | None = None,
) -> Page[ApprovalPublic]:
    """List approvals visible to the caller, oldest first, with filters."""
    rows = await service.list_approvals(
        session,
        who,
        state=state,
        domain=domain,
        agent_id=agent_id,
        after=page.after,
        limit=page.limit,
    )
    return Page[ApprovalPublic].of([_public(r) for r in rows], page.limit)


@router.get("/{approval_id}", responses=error_responses(404))
async def get_approval(
    approval_id: uuid.UUID, who: CurrentOperator, session: Session
) -> ApprovalPublic:
    """Get one approval."""
    return _public(await service.get(session, who, approval_id))


@router.post(
    "/{approval_id}/approve",
    dependencies=[OperatorIdempotent],
    responses=error_responses(404, 409),
)
async def approve_approval(
    approval_id: uuid.UUID,
    who: CurrentOperator,
    session: Session,
    state: State,
    body: ApprovalVerdict | None = None,
) -> ApprovalPublic:
    """Approve a pending approval (approver of its domain or platform_admin, not the owner)."""
    comment = body.comment if body else None
    return _public(
        await service.resolve(
            session, state.audit_context, who, approval_id, ApprovalState.approved, comment
        )
    )


@router.post(
    "/{approval_id}/deny",
    dependencies=[OperatorIdempotent],
    responses=error_responses(404, 409),
)
async def deny_approval(
    approval_id: uuid.UUID,
    who: CurrentOperator,
    session: Session,
    state: State,
    body: ApprovalVerdict | None = None,
) -> ApprovalPublic:
    """Deny a pending approval (approver of its domain or platform_admin, not the owner)."""
    comment = body.comment if body else None
    return _public(
        await service.resolve(
            session, state.audit_context, who, approval_id, ApprovalState.denied, comment
        )
    )

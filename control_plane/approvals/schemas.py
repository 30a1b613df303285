from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from control_plane.kit.schemas import RequestModel, ResponseModel


class ApprovalState(StrEnum):
    """pending -> approved | denied; approved -> used; pending or approved past
    ``expires_at`` reads as expired."""

    pending = "pending"
    approved = "approved"
    denied = "denied"
    used = "used"
    expired = "expired"


class ApprovalVerdict(RequestModel):
    comment: Annotated[str, StringConstraints(strict=True, max_length=2000)] | None = Field(
        default=None, description="Why; kept with the approval and in the audit record."
    )


class ApprovalPublic(ResponseModel):
    id: uuid.UUID
    domain: str
    agent_id: uuid.UUID
    decision_id: uuid.UUID = Field(description="The decision that asked for approval.")
    input_hash: str = Field(
        description="SHA-256 (hex) of the RFC 8785 encoding of the exact action: agent id, "
        "version id, action, resource and context without time."
    )
    action: str
    resource: dict[str, Any] = Field(description="As recorded (redacted by policy).")
    reasons: list[str]
    approver_role: str | None
    state: ApprovalState
    expires_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    comment: str | None
    used_at: datetime | None
    used_by_decision_id: uuid.UUID | None
    created_at: datetime

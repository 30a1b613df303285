from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, StringConstraints

from control_plane.kit.schemas import RequestModel, ResponseModel

Action = Annotated[
    str,
    StringConstraints(strict=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:*/-]{0,199}$"),
    Field(
        description="What the agent wants to do, e.g. payments.refund.",
        examples=["payments.refund"],
    ),
]


class Resource(RequestModel):
    """What the action is on: a type and an id, plus any attributes the policy reads."""

    model_config = ConfigDict(extra="allow")
    allow_nul: ClassVar[bool] = True

    type: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]
    id: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=500)]


class DecisionRequest(RequestModel):
    action: Action
    resource: Resource
    context: dict[str, Any] = Field(
        default_factory=dict, description="Free-form: amount, time, trace ids, ..."
    )
    approval_id: uuid.UUID | None = Field(
        default=None,
        description="Retry of a require_approval decision: the approval granted for exactly "
        "this action (used once).",
    )


class DecisionResult(ResponseModel):
    decision_id: uuid.UUID
    effect: str = Field(description="allow, deny or require_approval")
    allow: bool
    reasons: list[str]
    obligations: list[dict[str, Any]]
    bundle: str
    revision: int | None
    engine: str
    served_by: Literal["active", "canary"] | None = Field(
        default=None,
        description="Why `revision` answered: the bundle's active revision, or its canary "
        "for the agents the canary assigns.",
    )
    approval_id: uuid.UUID | None = Field(
        default=None,
        description="require_approval: the approval to wait for, then to retry with; "
        "an allow with reason approved: the approval it used.",
    )
    retry_after: int | None = Field(
        default=None,
        description="budget_exceeded: seconds until the window resets (also Retry-After).",
    )


class DecisionRecord(ResponseModel):
    id: uuid.UUID
    agent_id: uuid.UUID
    domain: str
    client_id: uuid.UUID | None
    version_id: uuid.UUID | None
    version: str | None
    action: str
    resource: dict[str, Any]
    input_digest: str
    effect: str
    allow: bool
    reasons: list[str]
    obligations: list[dict[str, Any]]
    bundle: str
    revision: int | None
    engine: str
    served_by: str | None = Field(
        default=None,
        description="active or canary. For a decision an enforcement point logged: from the "
        "bundle revision its event names, when the server that took the log built that bundle; "
        "else null, and so is revision.",
    )
    failure: str | None
    latency_ms: float
    trace_id: str | None = Field(
        default=None, description="W3C trace id of the request that asked (32 hex digits)."
    )
    created_at: datetime


class DecisionReplayRecord(ResponseModel):
    """One replay of a recorded decision by its ``Idempotency-Key``."""

    id: uuid.UUID
    decision_id: uuid.UUID
    agent_id: uuid.UUID
    client_id: uuid.UUID | None
    replayed_at: datetime

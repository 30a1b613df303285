"""Typed answers and records. Answers tolerate fields a newer server adds (``extra="ignore"``);
the records the SDK sends refuse unknown fields, as the server does, so a typo fails at
``audit()`` time instead of in the background flusher."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["AuditRecord", "AuditStatus", "Decision"]

AuditStatus = Literal["succeeded", "failed", "compensated", "cancelled"]


class Decision(BaseModel):
    """The answer of ``POST /v1/decisions``.

    ``effect`` is ``allow``, ``deny`` or ``require_approval``; ``allow`` is true only for
    ``allow``; ``reasons`` are human-readable; ``obligations`` are policy objects such as
    ``{"type": "redact", "fields": ["resource.card_number"]}``; ``revision`` is the policy
    bundle revision that decided (None when no revision was active); ``served_by`` says why:
    ``active``, or ``canary`` when the agent is on the bundle's canary (None when no policy
    answered, or from a server that does not say); ``approval_id``, on a ``require_approval``
    from the control plane, is the approval to ask a human for (``/v1/approvals``), and the
    one to pass to ``decide(..., approval_id=...)`` once it is approved.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    decision_id: uuid.UUID
    effect: str
    allow: bool
    reasons: list[str] = Field(default_factory=list)
    obligations: list[dict[str, Any]] = Field(default_factory=list)
    bundle: str | None = None
    revision: int | None = None
    engine: str | None = None
    served_by: str | None = None
    approval_id: uuid.UUID | None = None

    @property
    def redact_fields(self) -> list[str]:
        """The field patterns named by the decision's ``redact`` obligations."""
        fields: list[str] = []
        for obligation in self.obligations:
            if obligation.get("type") == "redact":
                fields.extend(f for f in obligation.get("fields") or [] if isinstance(f, str))
        return fields


def _now() -> datetime:
    return datetime.now(UTC)


class AuditRecord(BaseModel):
    """One audit record, as ``POST /v1/audit/records`` takes it.

    ``id`` is client-chosen (a fresh UUID by default) and is the idempotency key: the server
    stores a record once however often it is sent. ``resource`` needs ``type`` and ``id`` and
    may carry more fields. ``status`` is one of succeeded, failed, compensated, cancelled.
    ``parent_id`` points a compensating record at the record it compensates.
    """

    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    timestamp: datetime = Field(default_factory=_now)
    action: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:*/-]{0,199}$")
    resource: dict[str, Any]
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    rationale: str | None = Field(default=None, max_length=10_000)
    status: AuditStatus
    decision_id: uuid.UUID | None = None
    trace_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    traceparent: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
    )
    parent_id: uuid.UUID | None = None

    @field_validator("resource")
    @classmethod
    def _resource_has_type_and_id(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in ("type", "id"):
            if not isinstance(value.get(key), str) or not value[key]:
                raise ValueError(f"resource needs a non-empty string {key!r}")
        return value

    def wire(self) -> dict[str, Any]:
        """The JSON object sent to the server (None fields left out, RFC 3339 timestamp)."""
        return self.model_dump(mode="json", exclude_none=True)

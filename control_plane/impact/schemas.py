"""Request, report and job models of impact analysis.

The report's JSON Schema is committed as schemas/impact-report.schema.json (generated from
``ImpactReport``; a test fails on drift), so CI pipelines can validate what
``agentctl policy impact --output json`` prints.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from control_plane.kit.schemas import NAME_PATTERN, RFC3339DateTime

EffectName = Literal["allow", "deny", "require_approval"]
NotExactReason = Literal["no_input", "redacted", "governance_gate"]
MAX_LIMIT = 100_000


class ImpactRequest(BaseModel):
    """Which stored decisions to replay; every filter is optional."""

    model_config = ConfigDict(extra="forbid")

    since: RFC3339DateTime | None = Field(default=None, description="Decided at or after.")
    until: RFC3339DateTime | None = Field(
        default=None, description="Decided before (default: when the request arrives)."
    )
    domain: Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)] | None = None
    agent_id: uuid.UUID | None = None
    action: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    limit: int = Field(
        default=10_000, ge=1, le=MAX_LIMIT, description="At most this many decisions, oldest first."
    )
    max_listed: int = Field(
        default=100,
        ge=0,
        le=1_000,
        description="At most this many changed (and not exact) decisions are listed; totals "
        "always count every one.",
    )
    background: bool = Field(
        default=False,
        description="Run as a background job whatever the window's size (202 and a job).",
    )


class ImpactChange(BaseModel):
    """One decision whose effect the candidate revision changes."""

    decision_id: uuid.UUID
    old_effect: EffectName
    new_effect: EffectName
    old_reasons: list[str]
    new_reasons: list[str]
    exact: bool = Field(description="False when the stored input had redacted values.")


class ImpactNotExact(BaseModel):
    """A decision that could not be replayed exactly, and why: ``no_input`` (none stored: the
    decision failed closed or predates stored inputs; not replayed), ``redacted`` (the input
    had redacted values; replayed with their markers), ``governance_gate`` (the stored effect
    came from an approval or a budget, not from policy alone; replayed, not compared)."""

    decision_id: uuid.UUID
    reason: NotExactReason


class ImpactReport(BaseModel):
    """What the candidate revision changes in the stored decisions selected."""

    bundle: str
    revision: int
    total: int = Field(description="Decisions selected by the filters (at most the limit).")
    replayed: int = Field(description="Decisions evaluated against the candidate.")
    compared: int = Field(description="Replayed decisions compared with the stored effect.")
    unchanged: int
    changes: dict[str, int] = Field(
        description="Changed decisions by transition, e.g. {'allow->deny': 3}; "
        "only transitions that occur."
    )
    changed: list[ImpactChange]
    changed_truncated: bool = Field(description="More changed decisions than listed.")
    not_exact: dict[NotExactReason, int]
    not_exact_decisions: list[ImpactNotExact]
    not_exact_truncated: bool
    duration_seconds: float


class ImpactJob(BaseModel):
    """A background impact analysis (in this replica's memory: see the README)."""

    id: uuid.UUID
    status: Literal["running", "succeeded", "failed"]
    bundle: str
    revision: int
    done: int = Field(description="Decisions processed so far.")
    total: int = Field(description="Decisions selected (the end of `done`).")
    created_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    report: ImpactReport | None = None

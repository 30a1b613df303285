from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from control_plane.kit.schemas import NAME_PATTERN, RequestModel, ResponseModel


class RevisionCreate(RequestModel):
    modules: Annotated[
        dict[str, str],
        Field(
            min_length=1,
            description='Rego v1 modules by path, e.g. {"agents/authz.rego": "package ..."}.',
        ),
    ]
    data: dict[str, Any] = Field(default_factory=dict, description="The bundle's data document.")


class RevisionSummary(ResponseModel):
    bundle: str
    revision: int
    digest: str
    active: bool = False
    modules: list[str] = Field(description="Module paths.")
    created_by: str
    created_at: datetime


class RevisionPublic(RevisionSummary):
    sources: dict[str, str] = Field(description="Module sources by path.")
    data: dict[str, Any]


class CanaryPublic(ResponseModel):
    revision: int
    percent: float = Field(description="Share of agents on the canary (policy.canary), 0-100.")
    domains: list[str] = Field(description="Domains whose every agent is on the canary.")


class BundlePublic(ResponseModel):
    name: str
    active_revision: int | None
    shadow_revision: int | None = Field(
        default=None, description="Evaluated beside every decision, never answering."
    )
    canary: CanaryPublic | None = Field(
        default=None, description="The revision answering for the agents the canary assigns."
    )
    created_at: datetime
    updated_at: datetime


class ShadowSet(RequestModel):
    revision: int = Field(
        strict=True, ge=1, le=2**31 - 1, description="The revision to evaluate in shadow."
    )


class CanaryStart(RequestModel):
    revision: int = Field(
        strict=True, ge=1, le=2**31 - 1, description="The revision to serve on the canary."
    )
    percent: float = Field(
        default=0,
        strict=True,
        ge=0,
        le=100,
        multiple_of=0.01,
        description="Share of agents (by the hash of bundle and agent id; see README).",
    )
    domains: list[Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]] = Field(
        default_factory=list, max_length=100, description="Domains whose every agent is on it."
    )


class ShadowDiffPublic(ResponseModel):
    id: uuid.UUID
    bundle: str
    decision_id: uuid.UUID
    revision: int | None = Field(description="The revision that answered the decision.")
    shadow_revision: int
    action: str
    agent_id: uuid.UUID
    domain: str
    old_effect: str
    new_effect: str
    old_reasons: list[str]
    new_reasons: list[str]
    decided_at: datetime
    created_at: datetime


class ShadowChange(ResponseModel):
    action: str
    change: str = Field(description="old effect -> new effect, e.g. allow->deny.")
    count: int


class ShadowSummary(ResponseModel):
    bundle: str
    shadow_revision: int | None = Field(description="The shadow revision summarised (all: null).")
    total: int
    changes: list[ShadowChange] = Field(description="Differences per action and change.")

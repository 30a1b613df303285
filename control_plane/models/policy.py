"""Policy tables: named bundles, their immutable revisions, and every decision taken."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from control_plane.kit.ids import uuid7
from control_plane.models.base import JSONType, UTCDateTime, timestamp_now


class PolicyBundle(SQLModel, table=True):
    __tablename__ = "policy_bundles"

    name: str = Field(primary_key=True, max_length=63)
    # The revision decisions use; activating an earlier one is the rollback.
    active_revision: int | None = Field(default=None)
    # Evaluated beside every decision, never answering (policy.shadow); None: no shadow.
    shadow_revision: int | None = Field(default=None)
    # Answers for the agents `policy.canary.on_canary` assigns to it; None: no canary.
    canary_revision: int | None = Field(default=None)
    # The share of agents on the canary, in basis points (0..10,000), and the domains whose
    # every agent is on it.
    canary_basis_points: int | None = Field(default=None)
    canary_domains: list[str] | None = Field(
        default=None, sa_column=Column(JSONType, nullable=True)
    )
    created_at: datetime = timestamp_now()
    updated_at: datetime = timestamp_now()


class PolicyRevision(SQLModel, table=True):
    """Immutable: a revision is never updated, only superseded."""

    __tablename__ = "policy_revisions"
    __table_args__ = (UniqueConstraint("bundle", "revision", name="uq_policy_revisions_number"),)

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    bundle: str = Field(foreign_key="policy_bundles.name", max_length=63)
    revision: int
    modules: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    data: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    # sha256 of the canonical JSON of {"modules", "data"}.
    digest: str = Field(max_length=71)
    # The WebAssembly module OPA compiled from the runtime modules at upload (the wasm engine
    # runs it); None when the bundle has no decision package. Checked by sha256 on store.
    wasm: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_by: str = Field(max_length=100)
    created_at: datetime = timestamp_now()


class Decision(SQLModel, table=True):
    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_agent_id_id", "agent_id", "id"),
        Index("ix_decisions_domain_id", "domain", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    agent_id: uuid.UUID = Field(foreign_key="agents.id")
    domain: str = Field(max_length=63)
    client_id: uuid.UUID | None = Field(default=None)
    version_id: uuid.UUID | None = Field(default=None)
    version: str | None = Field(default=None, max_length=100)
    action: str = Field(max_length=200, index=True)
    resource: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    input_digest: str = Field(max_length=71)
    effect: str = Field(max_length=20, index=True)
    allow: bool
    reasons: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    obligations: list[dict[str, Any]] = Field(sa_column=Column(JSONType, nullable=False))
    bundle: str = Field(max_length=63)
    revision: int | None = Field(default=None)
    engine: str = Field(max_length=20)
    # Set when the engine failed and the decision failed closed.
    failure: str | None = Field(default=None, max_length=500)
    latency_ms: float
    trace_id: str | None = Field(default=None, max_length=64)
    # Set for a decision an enforcement point took and logged (POST /v1/logs).
    enforcement_point_id: uuid.UUID | None = Field(default=None)
    # The input policy evaluated, redacted by the decision's ``redact`` obligations (values
    # replaced by HMAC markers, never kept in clear); None when the decision failed closed
    # (no obligations to redact by) or was recorded before inputs were kept. Impact analysis
    # replays it (control_plane/policy/impact.py).
    input: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType, nullable=True))
    # Why ``revision`` answered: ``active`` or ``canary`` (None: recorded before 0011, or an
    # edge decision log).
    served_by: str | None = Field(default=None, max_length=10)
    created_at: datetime = timestamp_now()


class ShadowDiff(SQLModel, table=True):
    """A decision whose shadow evaluation differs from what the engine answered: once per
    (decision, shadow revision)."""

    __tablename__ = "shadow_diffs"
    __table_args__ = (
        UniqueConstraint("decision_id", "shadow_revision", name="uq_shadow_diffs_decision"),
        Index("ix_shadow_diffs_bundle_id", "bundle", "shadow_revision", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    bundle: str = Field(max_length=63)
    decision_id: uuid.UUID
    revision: int | None = Field(default=None)
    shadow_revision: int
    action: str = Field(max_length=200)
    agent_id: uuid.UUID
    domain: str = Field(max_length=63)
    old_effect: str = Field(max_length=20)
    new_effect: str = Field(max_length=20)
    old_reasons: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    new_reasons: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    decided_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    created_at: datetime = timestamp_now()

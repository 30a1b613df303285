"""Registry tables: domains, agents and agent versions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from control_plane.kit.ids import uuid7
from control_plane.models.base import JSONType, timestamp_now, timestamp_null


class Domain(SQLModel, table=True):
    __tablename__ = "domains"

    name: str = Field(primary_key=True, max_length=63)
    description: str = Field(default="", max_length=1000)
    created_at: datetime = timestamp_now()
    # The kill switch: set while every agent of the domain is suspended (POST .../suspend).
    suspended_at: datetime | None = timestamp_null()


class Agent(SQLModel, table=True):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("domain", "name", name="uq_agents_domain_name"),)

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    name: str = Field(max_length=63)
    domain: str = Field(foreign_key="domains.name", max_length=63, index=True)
    owner: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    autonomy_level: int = Field(default=0)
    status: str = Field(default="active", max_length=16, index=True)
    labels: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    # Row version: the ETag. Updates are conditional on it, so a stale writer gets 412.
    revision: int = Field(default=1)
    created_at: datetime = timestamp_now()
    updated_at: datetime = timestamp_now()


class AgentVersion(SQLModel, table=True):
    __tablename__ = "agent_versions"
    __table_args__ = (
        UniqueConstraint("agent_id", "version", name="uq_agent_versions_agent_version"),
        # At most one active version per agent, enforced by the database itself.
        Index(
            "uq_agent_versions_one_active",
            "agent_id",
            unique=True,
            postgresql_where=text("state = 'active'"),
            sqlite_where=text("state = 'active'"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    agent_id: uuid.UUID = Field(foreign_key="agents.id", index=True)
    version: str = Field(max_length=100)
    model_name: str = Field(max_length=200)
    model_version: str = Field(max_length=100)
    artifact_digest: str = Field(max_length=71)
    signature: str | None = Field(default=None, max_length=8192)
    state: str = Field(default="registered", max_length=16)
    created_at: datetime = timestamp_now()
    updated_at: datetime = timestamp_now()
    # The operator (principal key) that registered the version: with
    # AGENTCTL_VERSION_APPROVAL_SEPARATION another operator must approve it. None before 0007.
    registered_by: str | None = Field(default=None, max_length=100)
    approved_at: datetime | None = timestamp_null()
    approved_by: str | None = Field(default=None, max_length=100)
    activated_at: datetime | None = timestamp_null()

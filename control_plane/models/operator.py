"""Operators: the people and automation that manage the control plane over HTTP."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from control_plane.kit.ids import uuid7
from control_plane.models.base import JSONType, timestamp_now, timestamp_null


class Operator(SQLModel, table=True):
    __tablename__ = "operators"

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    name: str = Field(max_length=100)
    role: str = Field(max_length=32)
    domains: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    # sha256 of the token; the token itself is shown once and never stored.
    token_hash: str = Field(max_length=64, unique=True)
    token_prefix: str = Field(max_length=16)
    is_bootstrap: bool = Field(default=False)
    created_at: datetime = timestamp_now()
    revoked_at: datetime | None = timestamp_null()

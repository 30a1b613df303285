"""Stored responses of POST requests that carried an ``Idempotency-Key``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from control_plane.models.base import JSONType, timestamp_now


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_keys"

    # Keyed by principal first: keys chosen by different principals never collide.
    principal: str = Field(primary_key=True, max_length=100)
    key: str = Field(primary_key=True, max_length=255)
    request_hash: str = Field(max_length=64)
    status_code: int
    response_headers: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONType, nullable=False)
    )
    response_body: str = Field(sa_column=Column(Text, nullable=False))
    # A digest of the state the stored answer depended on (routes with a replay guard): a
    # replay is valid only while it is unchanged.
    depends_on: str | None = Field(default=None, max_length=64)
    created_at: datetime = timestamp_now()

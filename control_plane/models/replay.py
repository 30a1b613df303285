"""Replays of recorded decisions: every answer served again by ``Idempotency-Key`` is on record."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from control_plane.kit.ids import uuid7
from control_plane.models.base import timestamp_now


class DecisionReplay(SQLModel, table=True):
    __tablename__ = "decision_replays"
    __table_args__ = (Index("ix_decision_replays_decision_id_id", "decision_id", "id"),)

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    # No foreign key: the replayed answer names a decision that may be pruned later.
    decision_id: uuid.UUID
    domain: str = Field(max_length=63)
    agent_id: uuid.UUID
    client_id: uuid.UUID | None = Field(default=None)
    idempotency_key: str = Field(max_length=255)
    replayed_at: datetime = timestamp_now()

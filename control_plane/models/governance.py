"""Governance tables: approvals, budgets and their counters, the event outbox.

``approvals`` are human decisions bound to one exact action (``input_hash``); ``budgets`` hold
the limits of an agent or a domain and ``budget_counters`` the use of each window (one row per
budget and window, created with the budget, so consuming is a single conditional UPDATE);
``events`` is the transactional outbox, written in the transaction of the change it announces.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Integer, Text
from sqlmodel import Field, SQLModel

from control_plane.kit.ids import uuid7
from control_plane.models.base import JSONType, UTCDateTime, timestamp_now, timestamp_null

_BIGINT_ID = BigInteger().with_variant(Integer(), "sqlite")


class Approval(SQLModel, table=True):
    __tablename__ = "approvals"
    __table_args__ = (
        Index("ix_approvals_domain_id", "domain", "id"),
        Index("ix_approvals_agent_id_id", "agent_id", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    domain: str = Field(max_length=63)
    agent_id: uuid.UUID
    client_id: uuid.UUID | None = Field(default=None)
    decision_id: uuid.UUID
    # SHA-256 hex of the RFC 8785 encoding of the exact action (see approvals.service).
    input_hash: str = Field(max_length=64)
    action: str = Field(max_length=200)
    resource: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    reasons: list[str] = Field(sa_column=Column(JSONType, nullable=False))
    approver_role: str | None = Field(default=None, max_length=100)
    # pending -> approved | denied; approved -> used. Expiry is read from expires_at.
    state: str = Field(default="pending", max_length=16, index=True)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    resolved_at: datetime | None = timestamp_null()
    resolved_by: str | None = Field(default=None, max_length=100)
    comment: str | None = Field(default=None, max_length=2000)
    used_at: datetime | None = timestamp_null()
    used_by_decision_id: uuid.UUID | None = Field(default=None)
    created_at: datetime = timestamp_now()


class Budget(SQLModel, table=True):
    """The limits of one agent (``scope`` agent, ``key`` its id) or domain (``key`` its name);
    None is no limit. Spend is in minor units, read from ``spend_field`` of the input."""

    __tablename__ = "budgets"

    scope: str = Field(primary_key=True, max_length=16)
    key: str = Field(primary_key=True, max_length=63)
    actions_per_minute: int | None = Field(default=None)
    actions_per_hour: int | None = Field(default=None)
    spend_per_day: int | None = Field(default=None, sa_type=BigInteger)
    spend_field: str = Field(default="resource.amount", max_length=200)
    updated_at: datetime = timestamp_now()


class BudgetCounter(SQLModel, table=True):
    """Use of one window of one budget: ``used`` counts from ``window_start`` (a fixed window)."""

    __tablename__ = "budget_counters"

    scope: str = Field(primary_key=True, max_length=16)
    key: str = Field(primary_key=True, max_length=63)
    window: str = Field(primary_key=True, max_length=32)
    window_start: int = Field(default=0, sa_type=BigInteger)
    used: int = Field(default=0, sa_type=BigInteger)


class EventRow(SQLModel, table=True):
    """One CloudEvents 1.0 event in the outbox. ``seq`` orders events within the writer;
    ``txid`` (PostgreSQL's transaction id, 0 on SQLite) orders them by commit visibility."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_txid_seq", "txid", "seq"),)

    seq: int | None = Field(default=None, sa_column=Column(_BIGINT_ID, primary_key=True))
    txid: int = Field(default=0, sa_type=BigInteger)
    id: uuid.UUID = Field(default_factory=uuid7, unique=True)
    type: str = Field(max_length=100, index=True)
    source: str = Field(max_length=200)
    subject: str | None = Field(default=None, max_length=200)
    domain: str | None = Field(default=None, max_length=63, index=True)
    time: datetime = timestamp_now()
    data: str = Field(sa_column=Column(Text, nullable=False))


class Webhook(SQLModel, table=True):
    """A subscriber: events of ``types`` (empty: all) in ``domain`` (None: all) are POSTed to
    ``url``, signed per Standard Webhooks with a secret stored encrypted under the KEK.
    ``cursor_*`` is how far the dispatcher has queued deliveries."""

    __tablename__ = "webhooks"

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    url: str = Field(max_length=2000)
    domain: str | None = Field(default=None, max_length=63)
    types: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    secret_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    created_by: str = Field(max_length=100)
    cursor_txid: int = Field(default=0, sa_type=BigInteger)
    cursor_seq: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = timestamp_now()
    deleted_at: datetime | None = timestamp_null()


class WebhookDelivery(SQLModel, table=True):
    """One event for one webhook: pending (due at ``next_attempt_at``), delivered, or dead
    after ``attempts`` failures."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_webhook_id", "webhook_id", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    webhook_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str = Field(max_length=100)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    state: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    last_status: int | None = Field(default=None)
    last_error: str | None = Field(default=None, max_length=500)
    delivered_at: datetime | None = timestamp_null()
    created_at: datetime = timestamp_now()

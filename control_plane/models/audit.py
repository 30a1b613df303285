"""Audit tables: the records, the per-domain logs (leaves, checkpoints), the checkpoint key.

``audit_records``, ``audit_leaves`` and ``audit_checkpoints`` are append-only: triggers refuse
UPDATE, DELETE and TRUNCATE on PostgreSQL (UPDATE and DELETE on SQLite). ``audit_pending`` is the
sequencer's work queue (rows are deleted once sequenced) and ``audit_redaction_lists`` a setting;
neither is part of the log.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from control_plane.kit.ids import uuid7
from control_plane.models.base import JSONType, UTCDateTime, timestamp_now

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
_BIGINT_ID = BigInteger().with_variant(Integer(), "sqlite")


class AuditRecordRow(SQLModel, table=True):
    """One record as received (after redaction). ``record`` is the RFC 8785 encoding of the
    stored record; ``content_mac`` (HMAC-SHA256 of the submitted content under the server's
    redaction key) tells a retry of the same record from a different record with the same id."""

    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_records_domain_id", "domain", "id"),
        Index("ix_audit_records_agent_id", "agent_id", "id"),
        Index("ix_audit_records_decision_id", "decision_id"),
        Index("ix_audit_records_trace_id", "trace_id"),
    )

    id: uuid.UUID = Field(primary_key=True)
    domain: str = Field(max_length=63)
    agent_id: uuid.UUID
    kind: str = Field(max_length=16)
    action: str = Field(max_length=200)
    status: str = Field(max_length=16)
    decision_id: uuid.UUID | None = Field(default=None)
    trace_id: str | None = Field(default=None, max_length=32)
    timestamp: datetime = Field(sa_type=UTCDateTime, nullable=False)
    content_mac: str = Field(max_length=64)
    record: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = timestamp_now()


class AuditPending(SQLModel, table=True):
    """Records not yet sequenced, in arrival order."""

    __tablename__ = "audit_pending"

    id: int | None = Field(default=None, sa_column=Column(_BIGINT_ID, primary_key=True))
    record_id: uuid.UUID = Field(unique=True)
    domain: str = Field(max_length=63, index=True)


class AuditLeaf(SQLModel, table=True):
    """A record's place in its domain's log. ``canonical`` is exactly the bytes hashed:
    the RFC 8785 encoding of ``{"index": seq, "record": <stored record>}``."""

    __tablename__ = "audit_leaves"
    __table_args__ = (UniqueConstraint("record_id", name="uq_audit_leaves_record"),)

    domain: str = Field(primary_key=True, max_length=63)
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    record_id: uuid.UUID
    canonical: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = timestamp_now()


class AuditCheckpoint(SQLModel, table=True):
    """A signed checkpoint (C2SP tlog-checkpoint as a signed note)."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (Index("ix_audit_checkpoints_domain_size", "domain", "size"),)

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    domain: str = Field(max_length=63)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    key_id: str = Field(max_length=64)
    note: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = timestamp_now()


class AuditKey(SQLModel, table=True):
    """The checkpoint signing key (Ed25519), encrypted at rest under the KEK like the token
    signing keys."""

    __tablename__ = "audit_keys"

    kid: str = Field(primary_key=True, max_length=64)
    public_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    private_key_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = timestamp_now()


class AuditRedactionList(SQLModel, table=True):
    """Per-domain field patterns redacted from every audit record of the domain."""

    __tablename__ = "audit_redaction_lists"

    domain: str = Field(primary_key=True, max_length=63, foreign_key="domains.name")
    fields: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    updated_at: datetime = timestamp_now()


__all__ = [
    "AuditCheckpoint",
    "AuditKey",
    "AuditLeaf",
    "AuditPending",
    "AuditRecordRow",
    "AuditRedactionList",
]

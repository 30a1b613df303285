"""Credential tables: per-agent OAuth2 clients, the control plane's signing keys, and the
records that make revocation and one-time client assertions work across replicas."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from control_plane.kit.ids import uuid7
from control_plane.models.base import JSONType, UTCDateTime, timestamp_now, timestamp_null


class Credential(SQLModel, table=True):
    """An OAuth2 client of one agent, or of one enforcement point (then ``agent_id`` is None).
    ``id`` is the client_id."""

    __tablename__ = "credentials"

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    agent_id: uuid.UUID | None = Field(default=None, foreign_key="agents.id", index=True)
    enforcement_point_id: uuid.UUID | None = Field(
        default=None, foreign_key="enforcement_points.id", index=True
    )
    # client_secret_basic or private_key_jwt (client_secret_post: enforcement points only)
    auth_method: str = Field(max_length=32)
    # "sha256$<hex>" of the secret; the secret itself is returned once and never stored.
    secret_hash: str | None = Field(default=None, max_length=100)
    public_jwk: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    # Bound to one agent version: tokens only while that version is active.
    version_id: uuid.UUID | None = Field(default=None, foreign_key="agent_versions.id")
    description: str = Field(default="", max_length=500)
    created_by: str = Field(max_length=100)
    created_at: datetime = timestamp_now()
    expires_at: datetime | None = timestamp_null()
    revoked_at: datetime | None = timestamp_null()


class SigningKeyRow(SQLModel, table=True):
    """A token signing key. The private part is encrypted with the key-encryption key."""

    __tablename__ = "signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    alg: str = Field(max_length=16)
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    private_key_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = timestamp_now()
    retired_at: datetime | None = timestamp_null()
    # After this the public key leaves the JWKS: every token it signed has expired.
    not_after: datetime | None = timestamp_null()


class UsedAssertion(SQLModel, table=True):
    """``jti`` of client assertions already used; the primary key makes reuse fail everywhere."""

    __tablename__ = "used_client_assertions"

    client_id: uuid.UUID = Field(primary_key=True)
    jti: str = Field(primary_key=True, max_length=255)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class RevokedToken(SQLModel, table=True):
    """Access tokens revoked before their expiry (RFC 7009), kept until they would expire."""

    __tablename__ = "revoked_tokens"

    jti: str = Field(primary_key=True, max_length=255)
    client_id: uuid.UUID = Field(index=True)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    revoked_at: datetime = timestamp_now()

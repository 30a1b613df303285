"""Federation tables: the enforcement points of each domain and the bundle signing key."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from control_plane.kit.ids import uuid7
from control_plane.models.base import JSONType, timestamp_now, timestamp_null


class EnforcementPoint(SQLModel, table=True):
    """An OPA sidecar or an SDK in local mode of one domain. Its OAuth2 client is the
    ``credentials`` row whose ``enforcement_point_id`` is this id."""

    __tablename__ = "enforcement_points"
    __table_args__ = (UniqueConstraint("domain", "name", name="uq_enforcement_points_name"),)

    id: uuid.UUID = Field(default_factory=uuid7, primary_key=True)
    domain: str = Field(foreign_key="domains.name", max_length=63, index=True)
    name: str = Field(max_length=63)
    kind: str = Field(max_length=8)
    created_by: str = Field(max_length=100)
    created_at: datetime = timestamp_now()
    # What the point last reported running (status) or was last served (bundle fetch).
    bundle_revision: str | None = Field(default=None, max_length=80)
    last_contact_at: datetime | None = timestamp_null()
    last_error: str | None = Field(default=None, max_length=1000)


class BundleSigningKey(SQLModel, table=True):
    """The key that signs served bundles (``.signatures.json``): ES256, its private half
    encrypted at rest under the KEK like the token signing keys."""

    __tablename__ = "bundle_signing_keys"

    kid: str = Field(primary_key=True, max_length=64)
    alg: str = Field(max_length=16)
    public_jwk: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    private_key_encrypted: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = timestamp_now()

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AliasChoices, Field, StringConstraints

from control_plane.kit.schemas import RequestModel, ResponseModel, RFC3339DateTime


class Scope(StrEnum):
    decisions_create = "decisions:create"
    audit_write = "audit:write"
    bundles_read = "bundles:read"


class AuthMethod(StrEnum):
    client_secret_basic = "client_secret_basic"  # noqa: S105 - a method name
    private_key_jwt = "private_key_jwt"
    # Enforcement points only (docs/federation.md): agents' credentials use Basic.
    client_secret_post = "client_secret_post"  # noqa: S105 - a method name


class CredentialCreate(RequestModel):
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=20)]
    expires_at: RFC3339DateTime | None = Field(
        default=None, description="When the credential stops."
    )
    version: Annotated[str, StringConstraints(strict=True, max_length=100)] | None = Field(
        default=None,
        description="Bind to this approved version of the agent: tokens are issued only while "
        "it is the active version.",
    )
    public_jwk: dict[str, Any] | None = Field(
        default=None,
        description="Public JWK (OKP Ed25519 or EC P-256) for private_key_jwt; without it the "
        "credential gets a client secret.",
    )
    description: Annotated[str, StringConstraints(strict=True, max_length=500)] = ""


class CredentialPublic(ResponseModel):
    client_id: uuid.UUID = Field(validation_alias=AliasChoices("id", "client_id"))
    agent_id: uuid.UUID
    auth_method: AuthMethod
    scopes: list[Scope]
    version_id: uuid.UUID | None
    public_jwk: dict[str, Any] | None
    description: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class CredentialCreated(CredentialPublic):
    client_secret: str | None = Field(
        default=None, description="Shown in this response only; only its hash is stored."
    )

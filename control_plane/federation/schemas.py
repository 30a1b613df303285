from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from control_plane.kit.schemas import Name, RequestModel, ResponseModel


class PointKind(StrEnum):
    opa = "opa"
    sdk = "sdk"


class PointAuthMethod(StrEnum):
    client_secret_basic = "client_secret_basic"  # noqa: S105 - a method name
    client_secret_post = "client_secret_post"  # noqa: S105 - a method name
    private_key_jwt = "private_key_jwt"


class EnforcementPointCreate(RequestModel):
    name: Name
    kind: PointKind
    token_endpoint_auth_method: PointAuthMethod = PointAuthMethod.client_secret_basic
    jwks: dict[str, Any] | None = Field(
        default=None,
        description='For private_key_jwt: {"keys": [one public JWK, OKP Ed25519 or EC P-256]}.',
    )


class EnforcementPointPublic(ResponseModel):
    id: uuid.UUID
    domain: str
    name: str
    kind: PointKind
    client_id: uuid.UUID | None = Field(description="Its OAuth2 client (None once revoked).")
    created_by: str
    created_at: datetime
    bundle_revision: str | None = Field(
        description="The bundle revision the point last reported running or was last served."
    )
    current_revision: str | None = Field(
        description="The domain bundle's revision now (None when it cannot be built)."
    )
    last_contact_at: datetime | None
    stale_seconds: float | None = Field(
        description="Seconds since the last contact (None: never seen)."
    )
    last_error: str | None


class PointCredential(ResponseModel):
    client_id: uuid.UUID
    client_secret: str | None = Field(
        description="Shown in this response only; None for private_key_jwt."
    )
    token_endpoint_auth_method: PointAuthMethod
    token_endpoint: str
    scopes: list[str]


class EnforcementPointCreated(EnforcementPointPublic):
    credential: PointCredential


class RejectedEvent(ResponseModel):
    decision_id: str | None
    reason: str


class LogsAccepted(ResponseModel):
    accepted: int = Field(description="Events recorded now (a decision and its audit record).")
    duplicates: int = Field(description="Events whose decision_id was already on record.")
    rejected: list[RejectedEvent] = Field(
        description="Events not recorded: no verified agent to attribute them to, or malformed."
    )


class FederationKeys(ResponseModel):
    keys: list[dict[str, Any]] = Field(description="The bundle signing keys as a JWKS.")
    pem: dict[str, str] = Field(description="kid -> the public key as PEM, for OPA's keys.")
    algorithm: str

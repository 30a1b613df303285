"""Wire shapes of the OAuth2 endpoints: RFC 6749 token response and errors, RFC 7662
introspection, RFC 7517 JWKS, RFC 8414 metadata."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from control_plane.credentials.schemas import AuthMethod, Scope
from control_plane.kit.errors import ErrorCode
from control_plane.kit.schemas import ResponseModel


class TokenResponse(ResponseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - RFC 6749 token type
    expires_in: int
    scope: str


class Introspection(ResponseModel):
    """RFC 7662: an inactive token yields only ``{"active": false}``; an active one carries the
    access token's claims (RFC 9068) and may carry more."""

    model_config = {"extra": "allow"}

    active: bool
    token_type: str | None = Field(default=None, description="Bearer, for an active token.")
    scope: str | None = Field(default=None, description="Space-separated scopes.")
    client_id: str | None = None
    sub: str | None = Field(default=None, description="The agent id.")
    iss: str | None = None
    aud: str | list[str] | None = None
    exp: int | None = Field(default=None, description="Expiry, seconds since the epoch.")
    iat: int | None = Field(default=None, description="Issue time, seconds since the epoch.")
    jti: str | None = None


class PublicJWK(ResponseModel):
    """One public signing key (RFC 7517): OKP/Ed25519 for EdDSA, EC/P-256 for ES256."""

    kty: str = Field(description="OKP or EC.")
    crv: str = Field(description="Ed25519 or P-256.")
    x: str
    y: str | None = Field(default=None, description="EC keys only.")
    kid: str = Field(description="RFC 7638 thumbprint.")
    alg: str = Field(description="EdDSA or ES256.")
    use: str = Field(description="sig")


class JWKSet(ResponseModel):
    """The JWKS (RFC 7517 section 5) that verifies access tokens, newest key first."""

    keys: list[PublicJWK]


class AuthorizationServerMetadata(ResponseModel):
    """RFC 8414 authorization server metadata, exactly as the server behaves."""

    issuer: str
    token_endpoint: str
    jwks_uri: str
    introspection_endpoint: str
    revocation_endpoint: str
    grant_types_supported: list[str]
    response_types_supported: list[str] = Field(
        description='["none"]: there is no authorization endpoint (RFC 8414 requires the member).'
    )
    token_endpoint_auth_methods_supported: list[AuthMethod]
    token_endpoint_auth_signing_alg_values_supported: list[str]
    revocation_endpoint_auth_methods_supported: list[AuthMethod]
    revocation_endpoint_auth_signing_alg_values_supported: list[str]
    introspection_endpoint_auth_methods_supported: list[str] = Field(
        description="Bearer: an operator token (RFC 6750)."
    )
    scopes_supported: list[Scope]


class OAuthErrorCode(StrEnum):
    """The RFC 6749 section 5.2 error codes this server answers."""

    invalid_request = "invalid_request"
    invalid_client = "invalid_client"
    invalid_scope = "invalid_scope"
    unauthorized_client = "unauthorized_client"
    unsupported_grant_type = "unsupported_grant_type"


class OAuthErrorBody(ResponseModel):
    """An OAuth error (RFC 6749 section 5.2), ``application/json``; the RFC 9457 problem members
    are added so a problem-aware client reads it too."""

    error: OAuthErrorCode
    error_description: str
    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: ErrorCode

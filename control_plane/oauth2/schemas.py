"""Wire shapes of the OAuth2 endpoints (RFC 6749 token response, RFC 7662 introspection)."""

from __future__ import annotations

from control_plane.kit.schemas import ResponseModel


class TokenResponse(ResponseModel):
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - RFC 6749 token type
    expires_in: int
    scope: str


class Introspection(ResponseModel):
    """RFC 7662: an inactive token yields only ``{"active": false}``."""

    model_config = {"extra": "allow"}

    active: bool

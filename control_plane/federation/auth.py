"""Authenticating enforcement points on the federation routes (bundles, logs, status).

A point presents the access token its OAuth2 client got from ``/oauth/token``: verified with the
token key ring for the federation audience, then its credential must be unrevoked and unexpired
and its point must exist. Agent tokens (another audience) are refused like any invalid token.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.credentials import service as credentials
from control_plane.federation import repository
from control_plane.federation.tokens import audience
from control_plane.kit.errors import Unauthorized
from control_plane.kit.time import utcnow
from control_plane.models import EnforcementPoint
from control_plane.oauth2.agent_auth import InsufficientScope
from control_plane.oauth2.tokens import TokenError, verify_access_token
from control_plane.state import AppState


@dataclass(frozen=True)
class PointPrincipal:
    point: EnforcementPoint
    client_id: uuid.UUID
    scopes: frozenset[str]

    @property
    def key(self) -> str:
        return f"enforcement-point:{self.point.id}/{self.client_id}"


def _unauthorized(detail: str) -> Unauthorized:
    error = Unauthorized(detail)
    error.headers = {"WWW-Authenticate": 'Bearer realm="agentctl"'}
    return error


async def authenticate(session: AsyncSession, state: AppState, token: str) -> PointPrincipal:
    """The point presenting ``token``; ``Unauthorized`` (401) for anything else."""
    settings = state.settings
    kwargs: dict[str, Any] = {
        "issuer": settings.issuer_url,
        "audience": audience(settings),
        "leeway": settings.token_leeway_seconds,
    }
    try:
        try:
            verified = verify_access_token(await state.keystore.ring(), token, **kwargs)
        except TokenError as exc:
            if exc.reason != "unknown_kid":
                raise
            verified = verify_access_token(await state.keystore.ring(force=True), token, **kwargs)
        if verified.expires_at <= time.time():
            raise TokenError("expired")
        client_id = uuid.UUID(verified.client_id)
        point_id = uuid.UUID(verified.subject)
    except (TokenError, ValueError):
        raise _unauthorized("The enforcement point's access token is invalid.") from None
    credential = await credentials.find(session, client_id)
    if (
        credential is None
        or credential.enforcement_point_id != point_id
        or credential.revoked_at is not None
        or (credential.expires_at is not None and credential.expires_at <= utcnow())
    ):
        raise _unauthorized("The enforcement point's credential is no longer valid.")
    point = await repository.get(session, point_id)
    if point is None:
        raise _unauthorized("The enforcement point no longer exists.")
    return PointPrincipal(point=point, client_id=client_id, scopes=frozenset(verified.scopes))


def check_scope(principal: PointPrincipal, scope: str) -> None:
    if scope not in principal.scopes:
        raise InsufficientScope(scope)

"""Access tokens of enforcement points: issued by ``/oauth/token`` to a point's client, verified
on the federation routes.

A point's token has its own audience (``<issuer>/federation``), so it is never accepted where an
agent token is expected and an agent token is never accepted here; ``sub`` is the point's id and
``domain`` its domain. Called by ``control_plane.oauth2`` for clients without an agent.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.config import Settings
from control_plane.crypto.signing import SigningKeyRing
from control_plane.federation import repository
from control_plane.models import Credential, EnforcementPoint
from control_plane.oauth2.tokens import IssuedAccessToken, issue_access_token

#: Every scope an enforcement point's client holds.
POINT_SCOPES: tuple[str, ...] = ("bundles:read", "logs:write", "status:write")


def audience(settings: Settings) -> str:
    return f"{settings.issuer_url}/federation"


async def point_of(session: AsyncSession, credential: Credential) -> EnforcementPoint | None:
    if credential.enforcement_point_id is None:
        return None
    return await repository.get(session, credential.enforcement_point_id)


def issue_point_token(
    ring: SigningKeyRing,
    settings: Settings,
    point: EnforcementPoint,
    credential: Credential,
    scopes: list[str],
    lifetime: int,
) -> IssuedAccessToken:
    """Raises ``KeyRingError`` when no key can sign now."""
    return issue_access_token(
        ring,
        issuer=settings.issuer_url,
        audience=audience(settings),
        subject=str(point.id),
        client_id=str(credential.id),
        scope=scopes,
        lifetime_seconds=lifetime,
        extra_claims={"domain": point.domain, "enforcement_point": point.name},
    )

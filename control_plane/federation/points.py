"""Enforcement points: registering one (with its OAuth2 client), listing them with the revision
each last pulled and its staleness, and the ready OPA configuration of one. Serving their bundles
is ``service``; their decision logs and status, ``sinks``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.credentials import service as credentials
from control_plane.credentials.schemas import AuthMethod
from control_plane.domains import service as domains
from control_plane.federation import opa_config, repository
from control_plane.federation import service as serving
from control_plane.federation.schemas import (
    EnforcementPointCreate,
    EnforcementPointPublic,
    PointAuthMethod,
)
from control_plane.federation.signing import public_pem
from control_plane.federation.tokens import POINT_SCOPES
from control_plane.kit.errors import AlreadyExists, FieldError, NotFound, ValidationFailed
from control_plane.kit.time import aware, utcnow
from control_plane.models import EnforcementPoint
from control_plane.state import AppState


@dataclass(frozen=True)
class NewPoint:
    point: EnforcementPoint
    client_id: uuid.UUID
    client_secret: str | None


async def _writable_domain(session: AsyncSession, who: OperatorPrincipal, domain: str) -> None:
    who.require(Capability.registry_write)
    found = await domains.find(session, domain)
    who.visible(found, what="Domain", domain_of=lambda d: d.name)


async def create_point(
    session: AsyncSession, who: OperatorPrincipal, domain: str, body: EnforcementPointCreate
) -> NewPoint:
    """Register an enforcement point of ``domain`` and its OAuth2 client (registry:write on the
    domain). 409 when the name is taken in the domain; 422 for an unusable JWK."""
    await _writable_domain(session, who, domain)
    if await repository.find_by_name(session, domain, body.name) is not None:
        raise AlreadyExists(f"The enforcement point '{body.name}' already exists in {domain}.")
    jwk: dict[str, Any] | None = None
    if body.token_endpoint_auth_method is PointAuthMethod.private_key_jwt:
        keys = (body.jwks or {}).get("keys")
        if not isinstance(keys, list) or len(keys) != 1 or not isinstance(keys[0], dict):
            raise ValidationFailed(
                "private_key_jwt needs jwks with exactly one public key.",
                errors=[FieldError(pointer="/body/jwks", detail='{"keys": [one JWK]}')],
            )
        jwk = keys[0]
    elif body.jwks is not None:
        raise ValidationFailed(
            "jwks is for private_key_jwt only.",
            errors=[FieldError(pointer="/body/jwks", detail="only with private_key_jwt")],
        )
    point = EnforcementPoint(domain=domain, name=body.name, kind=body.kind, created_by=who.key)
    await repository.add(session, point)
    created = await credentials.create_point_credential(
        session,
        point_id=point.id,
        auth_method=AuthMethod(body.token_endpoint_auth_method.value),
        public_jwk=jwk,
        scopes=list(POINT_SCOPES),
        created_by=who.key,
        pointer="/body/jwks/keys/0",
    )
    return NewPoint(point, created.credential.id, created.client_secret)


async def _visible_point(
    session: AsyncSession, who: OperatorPrincipal, domain: str, name: str
) -> EnforcementPoint:
    who.require(Capability.registry_read)
    found = await repository.find_by_name(session, domain, name)
    return who.visible(found, what="Enforcement point")


async def get_point(
    session: AsyncSession, who: OperatorPrincipal, domain: str, name: str
) -> EnforcementPoint:
    return await _visible_point(session, who, domain, name)


async def list_points(
    session: AsyncSession,
    who: OperatorPrincipal,
    domain: str,
    *,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[EnforcementPoint]:
    who.require(Capability.registry_read)
    found = await domains.find(session, domain)
    who.visible(found, what="Domain", domain_of=lambda d: d.name)
    return await repository.list_page(session, domain, after=after, limit=limit)


async def public_point(
    session: AsyncSession, state: AppState, point: EnforcementPoint
) -> EnforcementPointPublic:
    """The listing shape: the point with its client, staleness and the domain's revision now."""
    active = [
        c for c in await credentials.point_credentials(session, point.id) if c.revoked_at is None
    ]
    contact = aware(point.last_contact_at) if point.last_contact_at is not None else None
    current = await serving.current_revision(session, state, point.domain)
    return EnforcementPointPublic(
        id=point.id,
        domain=point.domain,
        name=point.name,
        kind=point.kind,
        client_id=active[0].id if active else None,
        created_by=point.created_by,
        created_at=point.created_at,
        bundle_revision=point.bundle_revision,
        current_revision=current,
        last_contact_at=contact,
        stale_seconds=(utcnow() - contact).total_seconds() if contact is not None else None,
        last_error=point.last_error,
    )


async def opa_config_text(
    session: AsyncSession, state: AppState, who: OperatorPrincipal, domain: str, name: str
) -> str:
    """A ready OPA configuration for the point (``opa_config``); the client secret is left to
    ``${AGENTCTL_OPA_CLIENT_SECRET}`` (only its hash is stored). 404 without a live client."""
    point = await _visible_point(session, who, domain, name)
    active = [
        c for c in await credentials.point_credentials(session, point.id) if c.revoked_at is None
    ]
    if not active:
        raise NotFound("The enforcement point has no active credential.")
    key = await serving.signing_key(state)
    return opa_config.render(
        opa_config.PointConfig(
            base_url=state.settings.issuer_url,
            domain=point.domain,
            client_id=str(active[0].id),
            auth_method=active[0].auth_method,
            signing_kid=key.kid,
            signing_pem=public_pem(key.public_jwk),
            # A chunk the server refuses (413) would be retried by OPA for ever.
            log_upload_limit_bytes=min(
                opa_config.LOG_UPLOAD_LIMIT_BYTES, state.settings.max_body_bytes
            ),
        )
    )

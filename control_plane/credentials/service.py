"""Credential rules: the OAuth2 clients of agents (create, list, revoke).

A credential holds either a client secret (stored hashed, shown once) or a public JWK for
``private_key_jwt``; the OAuth2 server (``control_plane.oauth2``) authenticates clients against
these rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.agents import service as agents
from control_plane.agents.schemas import AgentStatus
from control_plane.auth.principals import OperatorPrincipal
from control_plane.credentials import repository
from control_plane.credentials.schemas import AuthMethod, CredentialCreate
from control_plane.crypto.jwk import InvalidClientJWK, parse_client_public_jwk
from control_plane.crypto.secrets import generate_client_secret, hash_secret
from control_plane.events import service as events
from control_plane.kit.errors import (
    FieldError,
    InvalidStateTransition,
    NotFound,
    ValidationFailed,
)
from control_plane.kit.time import aware, utcnow
from control_plane.models import Credential

# --- operator-facing: managing credentials ----------------------------------------------------


@dataclass(frozen=True)
class NewCredential:
    credential: Credential
    client_secret: str | None


async def create_credential(
    session: AsyncSession, who: OperatorPrincipal, agent_id: uuid.UUID, body: CredentialCreate
) -> NewCredential:
    agent = await agents.writable(session, who, agent_id)
    if agent.status == AgentStatus.retired:
        raise InvalidStateTransition("A retired agent cannot get credentials.")
    expires_at = aware(body.expires_at) if body.expires_at is not None else None
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationFailed(
            "expires_at is in the past.",
            errors=[FieldError(pointer="/body/expires_at", detail="must be in the future")],
        )
    version_id = None
    if body.version is not None:
        version = await agents.usable_version(session, agent.id, body.version)
        if version is None:
            raise ValidationFailed(
                "Credentials can be bound to an approved or active version of this agent only.",
                errors=[FieldError(pointer="/body/version", detail="no such approved version")],
            )
        version_id = version.id
    public_jwk: dict[str, Any] | None = None
    if body.public_jwk is not None:
        try:
            public_jwk = parse_client_public_jwk(body.public_jwk).as_dict()
        except InvalidClientJWK as exc:
            raise ValidationFailed(
                "The public_jwk is not an acceptable public key.",
                errors=[FieldError(pointer="/body/public_jwk", detail=str(exc))],
            ) from None
    secret = generate_client_secret() if public_jwk is None else None
    credential = Credential(
        agent_id=agent.id,
        auth_method=(
            AuthMethod.client_secret_basic if secret else AuthMethod.private_key_jwt
        ).value,
        secret_hash=hash_secret(secret) if secret else None,
        public_jwk=public_jwk,
        scopes=[s.value for s in dict.fromkeys(body.scopes)],
        version_id=version_id,
        description=body.description,
        created_by=who.key,
        expires_at=expires_at,
    )
    await repository.add_credential(session, credential)
    await events.emit(
        session,
        "credential.created.v1",
        {"agent_id": str(agent.id), "domain": agent.domain, "client_id": str(credential.id)},
        domain=agent.domain,
        subject=str(credential.id),
    )
    return NewCredential(credential, secret)


async def list_credentials(
    session: AsyncSession,
    who: OperatorPrincipal,
    agent_id: uuid.UUID,
    *,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Credential]:
    agent = await agents.readable(session, who, agent_id)
    return await repository.list_credentials(session, agent.id, after=after, limit=limit)


async def revoke_credential(
    session: AsyncSession, who: OperatorPrincipal, agent_id: uuid.UUID, client_id: uuid.UUID
) -> Credential:
    agent = await agents.writable(session, who, agent_id)
    credential = await repository.get_credential(session, client_id)
    if credential is None or credential.agent_id != agent.id:
        raise NotFound("Credential not found.")
    if credential.revoked_at is not None:
        raise InvalidStateTransition("The credential is already revoked.")
    credential.revoked_at = utcnow()
    session.add(credential)
    await session.flush()
    await events.emit(
        session,
        "credential.revoked.v1",
        {"agent_id": str(agent.id), "domain": agent.domain, "client_id": str(credential.id)},
        domain=agent.domain,
        subject=str(credential.id),
    )
    return credential


# --- for federation: the OAuth2 client of an enforcement point -------------------------------


async def create_point_credential(
    session: AsyncSession,
    *,
    point_id: uuid.UUID,
    auth_method: AuthMethod,
    public_jwk: dict[str, Any] | None,
    scopes: list[str],
    created_by: str,
    pointer: str = "/body/jwks",
) -> NewCredential:
    """The OAuth2 client of enforcement point ``point_id``: a client secret (shown once, stored
    hashed) or, for ``private_key_jwt``, the given public JWK. Raises ``ValidationFailed`` for a
    JWK that is not an acceptable public key (``pointer`` names it)."""
    parsed: dict[str, Any] | None = None
    if auth_method is AuthMethod.private_key_jwt:
        try:
            parsed = parse_client_public_jwk(public_jwk or {}).as_dict()
        except InvalidClientJWK as exc:
            raise ValidationFailed(
                "The JWK is not an acceptable public key (OKP Ed25519 or EC P-256).",
                errors=[FieldError(pointer=pointer, detail=str(exc))],
            ) from None
    secret = generate_client_secret() if parsed is None else None
    credential = Credential(
        agent_id=None,
        enforcement_point_id=point_id,
        auth_method=auth_method.value,
        secret_hash=hash_secret(secret) if secret else None,
        public_jwk=parsed,
        scopes=list(scopes),
        created_by=created_by,
    )
    await repository.add_credential(session, credential)
    return NewCredential(credential, secret)


async def point_credentials(session: AsyncSession, point_id: uuid.UUID) -> Sequence[Credential]:
    return await repository.point_credentials(session, point_id)


async def revoked_in_domain(session: AsyncSession, domain: str) -> tuple[list[str], list[str]]:
    """What enforcement points must refuse before the tokens expire: the ``jti`` of every
    revoked access token (RFC 7009; kept until it would expire) and the id (``client_id``
    claim) of every revoked credential of ``domain``'s agents, sorted."""
    return await repository.revoked_in_domain(session, domain)


async def revocations_fingerprint(session: AsyncSession, domain: str) -> tuple[Any, ...]:
    """Changes whenever ``revoked_in_domain`` does."""
    return await repository.revocations_fingerprint(session, domain)


# --- for oauth2: the clients it authenticates --------------------------------------------------


async def find(session: AsyncSession, client_id: uuid.UUID) -> Credential | None:
    """The credential (OAuth2 client) with this id, whoever asks."""
    return await repository.get_credential(session, client_id)

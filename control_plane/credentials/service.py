"""Credential rules and the OAuth2 authorisation server: issuing agent credentials, the
client_credentials grant (client_secret_basic and private_key_jwt), introspection and revocation.

Every way a client can fail to authenticate ends in one ``invalid_client`` answer with one
description, whatever check failed: telling ``unknown client`` from ``wrong secret`` would tell an
outsider which client ids exist. The reason goes to the log (``client_authentication_failed``),
never echoing a secret, token or claim value.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.agents import repository as agents
from control_plane.agents.schemas import AgentStatus, VersionState
from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.config import Settings
from control_plane.credentials import repository
from control_plane.credentials.keys import (
    InvalidClientJWK,
    KeyRingError,
    PublicJWK,
    SigningKeyRing,
    parse_client_public_jwk,
)
from control_plane.credentials.schemas import (
    AuthMethod,
    CredentialCreate,
    Introspection,
    TokenResponse,
)
from control_plane.credentials.tokens import (
    CLIENT_ASSERTION_TYPE,
    ClientAssertionError,
    TokenError,
    VerifiedAccessToken,
    averify_client_assertion,
    generate_client_secret,
    hash_secret,
    issue_access_token,
    verify_access_token,
    verify_secret,
)
from control_plane.kit.errors import (
    ErrorCode,
    FieldError,
    InvalidStateTransition,
    NotFound,
    ProblemError,
    ServiceUnavailable,
    ValidationFailed,
)
from control_plane.kit.time import aware, utcnow
from control_plane.models import Agent, Credential

# --- operator-facing: managing credentials ----------------------------------------------------


async def _agent_for_write(
    session: AsyncSession, who: OperatorPrincipal, agent_id: uuid.UUID
) -> Agent:
    who.require(Capability.registry_write)
    agent = await agents.get(session, agent_id)
    if agent is None or not who.sees_domain(agent.domain):
        raise NotFound("Agent not found.")
    return agent


@dataclass(frozen=True)
class NewCredential:
    credential: Credential
    client_secret: str | None


async def create_credential(
    session: AsyncSession, who: OperatorPrincipal, agent_id: uuid.UUID, body: CredentialCreate
) -> NewCredential:
    agent = await _agent_for_write(session, who, agent_id)
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
        version = await agents.find_version(session, agent.id, body.version)
        if version is None or version.state not in (VersionState.approved, VersionState.active):
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
    return NewCredential(credential, secret)


async def list_credentials(
    session: AsyncSession,
    who: OperatorPrincipal,
    agent_id: uuid.UUID,
    *,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Credential]:
    who.require(Capability.registry_read)
    agent = await agents.get(session, agent_id)
    if agent is None or not who.sees_domain(agent.domain):
        raise NotFound("Agent not found.")
    return await repository.list_credentials(session, agent.id, after=after, limit=limit)


async def revoke_credential(
    session: AsyncSession, who: OperatorPrincipal, agent_id: uuid.UUID, client_id: uuid.UUID
) -> Credential:
    agent = await _agent_for_write(session, who, agent_id)
    credential = await repository.get_credential(session, client_id)
    if credential is None or credential.agent_id != agent.id:
        raise NotFound("Credential not found.")
    if credential.revoked_at is not None:
        raise InvalidStateTransition("The credential is already revoked.")
    credential.revoked_at = utcnow()
    session.add(credential)
    await session.flush()
    return credential


# --- the token endpoint -----------------------------------------------------------------------


log = structlog.get_logger(__name__)


class OAuthError(ProblemError):
    """An RFC 6749 section 5.2 error, rendered as problem+json with the OAuth ``error`` member."""

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="agentctl"'
        super().__init__(
            description,
            headers=headers,
            extensions={"error": error, "error_description": description},
        )
        self.status = status
        self.code = {
            "invalid_client": ErrorCode.invalid_client,
            "invalid_scope": ErrorCode.invalid_scope,
            "unsupported_grant_type": ErrorCode.unsupported_grant_type,
        }.get(error, ErrorCode.invalid_request)
        self.title = "OAuth error"


CLIENT_AUTH_FAILED = "Client authentication failed."


def invalid_client(reason: str) -> OAuthError:
    """The one 401 ``invalid_client`` answer; ``reason`` is logged, not sent."""
    log.info("client_authentication_failed", reason=reason)
    return OAuthError("invalid_client", CLIENT_AUTH_FAILED, status=401)


@dataclass(frozen=True)
class ClientAuth:
    method: AuthMethod
    client_id: str
    secret: str | None = None
    assertion: str | None = None


def client_auth_from_request(authorization: str | None, form: Mapping[str, str]) -> ClientAuth:
    """Which client is calling, and how it proves it (exactly one method, RFC 6749 2.3)."""
    has_assertion = "client_assertion" in form or "client_assertion_type" in form
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise invalid_client("Use HTTP Basic client authentication or a client assertion.")
        if has_assertion or "client_secret" in form:
            raise OAuthError("invalid_request", "Use exactly one client authentication method.")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise invalid_client("Malformed Basic credentials.") from None
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            raise invalid_client("Malformed Basic credentials.")
        return ClientAuth(
            AuthMethod.client_secret_basic, unquote_plus(client_id), secret=unquote_plus(secret)
        )
    if has_assertion:
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise invalid_client(f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}.")
        assertion = form.get("client_assertion", "")
        if not assertion:
            raise invalid_client("client_assertion is missing.")
        return ClientAuth(
            AuthMethod.private_key_jwt, form.get("client_id", ""), assertion=assertion
        )
    if "client_secret" in form:
        raise invalid_client("client_secret_post is not supported; use HTTP Basic.")
    raise invalid_client("Client authentication is required.")


def _parse_client_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value and len(value) <= 64 else None
    except ValueError:
        return None


async def authenticate_client(
    session: AsyncSession, settings: Settings, auth: ClientAuth
) -> Credential:
    """The credential the client proved it holds, or ``invalid_client``."""
    if auth.method is AuthMethod.client_secret_basic:
        client_id = _parse_client_id(auth.client_id)
        credential = (
            await repository.get_credential(session, client_id) if client_id is not None else None
        )
        stored = credential.secret_hash if credential is not None else None
        # Compare even when the client is unknown, so timing does not tell the two apart.
        ok = verify_secret(auth.secret or "", stored or "sha256$" + "0" * 64)
        if credential is None or stored is None or not ok:
            raise invalid_client("Unknown client or wrong secret.")
        return credential

    found: dict[str, Credential] = {}

    async def lookup(client_id_text: str) -> PublicJWK | None:
        client_id = _parse_client_id(client_id_text)
        if client_id is None:
            return None
        credential = await repository.get_credential(session, client_id)
        if credential is None or credential.public_jwk is None:
            return None
        found["credential"] = credential
        return parse_client_public_jwk(credential.public_jwk)

    try:
        claims = await averify_client_assertion(
            auth.assertion,
            client_id_hint=auth.client_id or None,
            lookup_client_jwk=lookup,
            token_endpoint_url=settings.token_endpoint,
            leeway=settings.token_leeway_seconds,
        )
    except ClientAssertionError as exc:
        raise invalid_client(f"Client assertion rejected ({exc.reason}).") from None
    credential = found["credential"]
    expires = datetime.fromtimestamp(claims.exp + settings.token_leeway_seconds, UTC)
    if not await repository.record_assertion(session, credential.id, claims.jti, expires):
        raise invalid_client("Client assertion rejected (jti already used).")
    return credential


def _check_usable(credential: Credential, agent: Agent | None) -> Agent:
    now = utcnow()
    if credential.revoked_at is not None:
        raise invalid_client("The credential is revoked.")
    if credential.expires_at is not None and credential.expires_at <= now:
        raise invalid_client("The credential has expired.")
    if agent is None or agent.status != AgentStatus.active:
        raise invalid_client("The agent is not active.")
    return agent


async def issue_token(
    session: AsyncSession,
    ring: SigningKeyRing,
    settings: Settings,
    credential: Credential,
    form: Mapping[str, str],
) -> TokenResponse:
    grant = form.get("grant_type")
    if grant is None:
        raise OAuthError("invalid_request", "grant_type is required.")
    if grant != "client_credentials":
        raise OAuthError("unsupported_grant_type", "Only client_credentials is supported.")
    agent = _check_usable(credential, await agents.get(session, credential.agent_id))
    allowed = list(credential.scopes)
    requested = form.get("scope")
    scopes = allowed if requested is None else list(dict.fromkeys(requested.split()))
    if not scopes or not set(scopes) <= set(allowed):
        raise OAuthError("invalid_scope", "The requested scope exceeds the credential's scopes.")
    version = await repository.active_version(session, agent.id)
    if credential.version_id is not None and (
        version is None or version.id != credential.version_id
    ):
        raise invalid_client("The credential is bound to a version that is not active.")
    lifetime = settings.token_lifetime_seconds
    if credential.expires_at is not None:
        # A token never outlives its credential, for verifiers that check it offline.
        lifetime = min(lifetime, int((credential.expires_at - utcnow()).total_seconds()))
    if lifetime < 1:
        raise invalid_client("The credential has expired.")
    try:
        issued = issue_access_token(
            ring,
            issuer=settings.issuer_url,
            audience=settings.token_audience,
            subject=str(agent.id),
            client_id=str(credential.id),
            scope=scopes,
            lifetime_seconds=lifetime,
            extra_claims={
                "agent_name": agent.name,
                "domain": agent.domain,
                "autonomy_level": agent.autonomy_level,
                "version": version.version if version else None,
                "version_id": str(version.id) if version else None,
            },
        )
    except KeyRingError as exc:
        raise ServiceUnavailable("No signing key is available; try again shortly.") from exc
    return TokenResponse(
        access_token=issued.token,
        expires_in=lifetime,
        scope=" ".join(scopes),
    )


# --- introspection and revocation -------------------------------------------------------------

INACTIVE = Introspection(active=False)


def _verified_or_none(
    ring: SigningKeyRing, settings: Settings, token: str
) -> VerifiedAccessToken | None:
    """The token's verified claims, or None for anything that is not a valid token of ours."""
    try:
        return verify_access_token(
            ring,
            token,
            issuer=settings.issuer_url,
            audience=settings.token_audience,
            leeway=settings.token_leeway_seconds,
        )
    except TokenError:
        return None


async def introspect(
    session: AsyncSession,
    ring: SigningKeyRing,
    settings: Settings,
    who: OperatorPrincipal,
    token: str,
) -> Introspection:
    who.require(Capability.registry_read)
    verified = _verified_or_none(ring, settings, token)
    if verified is None:
        return INACTIVE
    client_id = _parse_client_id(verified.client_id)
    agent_id = _parse_client_id(verified.subject)
    if client_id is None or agent_id is None:
        return INACTIVE
    state = await repository.auth_state(session, client_id, agent_id, verified.jti)
    if state is None or auth_state_problem(state) is not None:
        return INACTIVE
    if not who.sees_domain(state.agent.domain):
        return INACTIVE
    return Introspection(active=True, token_type="Bearer", **dict(verified.claims))  # noqa: S106


def auth_state_problem(state: repository.AuthState) -> str | None:
    """Why a verified token must nonetheless be refused now, or None."""
    if state.token_revoked:
        return "the token is revoked"
    if state.credential_revoked:
        return "the credential is revoked"
    if state.credential_expires_at is not None and state.credential_expires_at <= utcnow():
        return "the credential has expired"
    if state.agent.status != AgentStatus.active:
        return "the agent is not active"
    if state.bound_version_state is not None and state.bound_version_state != VersionState.active:
        return "the credential's version is not active"
    return None


async def revoke(
    session: AsyncSession,
    ring: SigningKeyRing,
    settings: Settings,
    credential: Credential,
    token: str,
) -> None:
    """RFC 7009: revoke ``token`` if it belongs to the authenticated client; silent otherwise."""
    verified = _verified_or_none(ring, settings, token)
    if verified is None or verified.client_id != str(credential.id):
        return
    expires = datetime.fromtimestamp(verified.expires_at + settings.token_leeway_seconds, UTC)
    await repository.revoke_token(session, verified.jti, credential.id, expires)

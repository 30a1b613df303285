"""The OAuth2 authorisation server's rules: client authentication (client_secret_basic and
private_key_jwt), the client_credentials grant, introspection (RFC 7662) and revocation (RFC 7009).

Every way a client can fail to authenticate ends in one ``invalid_client`` answer with one
description, whatever check failed: telling ``unknown client`` from ``wrong secret`` would tell an
outsider which client ids exist. The reason goes to the log (``client_authentication_failed``),
never echoing a secret, token or claim value. Only refusals of an assertion that reveal nothing
about which clients exist name their rule (``_PUBLIC_ASSERTION_REASONS``).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote_plus

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.agents import service as agents
from control_plane.agents.schemas import AgentStatus, VersionState
from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.config import Settings
from control_plane.credentials import service as credentials
from control_plane.credentials.schemas import AuthMethod
from control_plane.crypto.jwk import PublicJWK, parse_client_public_jwk
from control_plane.crypto.secrets import verify_secret
from control_plane.crypto.signing import KeyRingError, SigningKeyRing
from control_plane.domains import service as domains
from control_plane.federation import tokens as point_tokens
from control_plane.kit.errors import ErrorCode, ProblemError, ServiceUnavailable
from control_plane.kit.ratelimit import FailureLimiter, Limit
from control_plane.kit.time import utcnow
from control_plane.models import Agent, Credential
from control_plane.oauth2 import repository
from control_plane.oauth2.assertions import verify_client_assertion
from control_plane.oauth2.auth_state import AuthState
from control_plane.oauth2.jws import MAX_ASSERTION_LIFETIME_SECONDS
from control_plane.oauth2.schemas import Introspection, TokenResponse
from control_plane.oauth2.tokens import (
    CLIENT_ASSERTION_TYPE,
    ClientAssertionError,
    TokenError,
    VerifiedAccessToken,
    issue_access_token,
    verify_access_token,
)

log = structlog.get_logger(__name__)

_SCOPE_CHARS = r"[\x21\x23-\x5b\x5d-\x7e]+"
_SCOPE = re.compile(rf"{_SCOPE_CHARS}(?: {_SCOPE_CHARS})*")


class OAuthError(ProblemError):
    """An RFC 6749 section 5.2 error: ``application/json`` with ``error`` and
    ``error_description``, plus the problem members (schema ``OAuthErrorBody``)."""

    media_type = "application/json"

    def __init__(
        self, error: str, description: str, *, status: int = 400, retry_after: int | None = None
    ) -> None:
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="agentctl"'
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, retry_after))
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
            "unauthorized_client": ErrorCode.unauthorized_client,
            "slow_down": ErrorCode.rate_limited,
        }.get(error, ErrorCode.invalid_request)
        self.title = "OAuth error"


CLIENT_AUTH_FAILED = "Client authentication failed."


# Refusals of an assertion whose signature already verified (or, for the algorithm, that do not
# depend on the client at all): saying why tells nothing to someone without the client's key, and
# a client author needs the rule (issue 8: state the lifetime limit). Everything else, above all
# unknown client vs wrong secret vs bad signature, gets the one uniform answer.
_PUBLIC_ASSERTION_REASONS = frozenset({"exp_too_far", "invalid_audience", "unsupported_alg"})


def invalid_client(reason: str, *, public: bool = False) -> OAuthError:
    """The 401 ``invalid_client`` answer. ``reason`` is always logged; it is sent only when
    ``public`` (a refusal that reveals nothing about which clients exist), otherwise the answer is
    the uniform ``CLIENT_AUTH_FAILED``."""
    log.info("client_authentication_failed", reason=reason)
    return OAuthError("invalid_client", reason if public else CLIENT_AUTH_FAILED, status=401)


def too_many_failures(retry_after: int) -> OAuthError:
    """The 429 answer of a client id or source address past its failure limit. RFC 6749 has no
    error code for it; ``slow_down`` is the token endpoint's registered one for "ask less often"
    (RFC 8628 section 3.5, OAuth Extensions Error Registry)."""
    return OAuthError(
        "slow_down",
        "Too many failed client authentications; retry after the Retry-After seconds.",
        status=429,
        retry_after=retry_after,
    )


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
        client_id = unquote_plus(client_id)
        if "client_id" in form and form["client_id"] != client_id:
            # One client authentication per request (RFC 6749 section 2.3): the form must not
            # name another client than the Basic credentials.
            raise OAuthError("invalid_request", "client_id differs from the Basic credentials.")
        return ClientAuth(AuthMethod.client_secret_basic, client_id, secret=unquote_plus(secret))
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
        # Accepted only for the clients registered with it (enforcement points that ask for
        # it); every agent credential is client_secret_basic, and is refused here.
        return ClientAuth(
            AuthMethod.client_secret_post,
            form.get("client_id", ""),
            secret=form.get("client_secret", ""),
        )
    raise invalid_client("Client authentication is required.")


def _parse_client_id(value: str) -> uuid.UUID | None:
    """The client id in its one canonical spelling (lowercase, hyphenated): ``uuid.UUID`` alone
    also takes braces, ``urn:uuid:`` and missing hyphens, so one client would have many ids."""
    try:
        parsed = uuid.UUID(value) if value and len(value) == 36 else None
    except ValueError:
        return None
    return parsed if parsed is not None and str(parsed) == value else None


async def authenticate_client(
    session: AsyncSession, settings: Settings, auth: ClientAuth, endpoint_url: str
) -> Credential:
    """The credential the client proved it holds, or ``invalid_client``.

    A client assertion's ``aud`` may be the issuer identifier (draft-ietf-oauth-rfc7523bis),
    the token endpoint, or ``endpoint_url``, the endpoint it was sent to (RFC 7523 section 3);
    its ``exp`` may be up to ``MAX_ASSERTION_LIFETIME_SECONDS`` (3600 s) ahead."""
    if auth.method in (AuthMethod.client_secret_basic, AuthMethod.client_secret_post):
        client_id = _parse_client_id(auth.client_id)
        credential = await credentials.find(session, client_id) if client_id is not None else None
        stored = credential.secret_hash if credential is not None else None
        # Compare even when the client is unknown, so timing does not tell the two apart.
        ok = verify_secret(auth.secret or "", stored or "sha256$" + "0" * 64)
        if credential is None or stored is None or not ok:
            raise invalid_client("Unknown client or wrong secret.")
        posted = auth.method is AuthMethod.client_secret_post
        if posted != (credential.auth_method == AuthMethod.client_secret_post):
            raise invalid_client("The client authenticates with another method.")
        return credential

    found: dict[str, Credential] = {}

    async def lookup(client_id_text: str) -> PublicJWK | None:
        client_id = _parse_client_id(client_id_text)
        if client_id is None:
            return None
        credential = await credentials.find(session, client_id)
        if credential is None or credential.public_jwk is None:
            return None
        found["credential"] = credential
        return parse_client_public_jwk(credential.public_jwk)

    try:
        claims = await verify_client_assertion(
            auth.assertion,
            client_id_hint=auth.client_id or None,
            lookup_client_jwk=lookup,
            token_endpoint_url=settings.token_endpoint,
            issuer=settings.issuer_url,
            extra_audiences=(endpoint_url,),
            leeway=settings.token_leeway_seconds,
        )
    except ClientAssertionError as exc:
        raise invalid_client(
            _assertion_problem(exc.reason, settings),
            public=exc.reason in _PUBLIC_ASSERTION_REASONS,
        ) from None
    credential = found["credential"]
    expires = datetime.fromtimestamp(claims.exp + settings.token_leeway_seconds, UTC)
    if not await repository.record_assertion(session, credential.id, claims.jti, expires):
        raise invalid_client("Client assertion rejected (jti already used).", public=True)
    return credential


def _presented_client_id(authorization: str | None, form: Mapping[str, str]) -> str | None:
    """The client id a request names, canonical or None, read before anything is verified: the
    Basic user name, else the form's ``client_id``. Only a canonical id can be a client, so only
    it gets a per-client counter (an assertion without ``client_id`` is limited per source)."""
    named = form.get("client_id")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
                named = unquote_plus(decoded.partition(":")[0])
            except (binascii.Error, UnicodeDecodeError):
                named = None
    parsed = _parse_client_id(named or "")
    return str(parsed) if parsed is not None else None


async def authenticate_request(
    session: AsyncSession,
    settings: Settings,
    authorization: str | None,
    form: Mapping[str, str],
    endpoint_url: str,
    source: str,
) -> Credential:
    """``client_auth_from_request`` then ``authenticate_client``, within the failure limits.

    Before anything is verified, the presented client id and the source address are checked
    against their limits (``oauth_client_failure_limit``, ``oauth_source_failure_limit`` per
    ``auth_failure_window_seconds``; one read): past either, ``slow_down`` (429, Retry-After),
    whatever the credentials. A failed proof (``invalid_client``) counts once for each; a
    request whose credentials verify counts nothing, and a refused one is not counted."""
    limiter = FailureLimiter(settings.auth_failure_window_seconds)
    limits = [Limit(f"oauth-source:{source}", settings.oauth_source_failure_limit)]
    client_id = _presented_client_id(authorization, form)
    if client_id is not None:
        limits.append(Limit(f"oauth-client:{client_id}", settings.oauth_client_failure_limit))
    retry_after = await limiter.check(session, limits)
    if retry_after is not None:
        log.info("client_authentication_limited", source=source, retry_after=retry_after)
        raise too_many_failures(retry_after)
    try:
        auth = client_auth_from_request(authorization, form)
        return await authenticate_client(session, settings, auth, endpoint_url)
    except OAuthError as exc:
        if exc.code is ErrorCode.invalid_client:
            limiter.failed(session, limits)
        raise


def _assertion_problem(reason: str, settings: Settings) -> str:
    """The error description for a refused assertion: the reason class, and the rule it broke
    where a client author needs it."""
    rules = {
        "exp_too_far": f"exp must be at most {MAX_ASSERTION_LIFETIME_SECONDS} s ahead",
        "invalid_audience": f"aud must be the issuer identifier {settings.issuer_url} or the "
        "URL of the endpoint",
        "unsupported_alg": "alg must be EdDSA or ES256",
    }
    rule = rules.get(reason)
    return f"Client assertion rejected ({reason}{': ' + rule if rule else ''})."


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
    allowed = list(credential.scopes)
    requested = form.get("scope")
    if requested is not None and not _SCOPE.fullmatch(requested):
        # RFC 6749 section 3.3: scope-tokens of %x21 / %x23-5B / %x5D-7E, separated by single
        # spaces; a tab, a newline or a doubled space is not a separator.
        raise OAuthError("invalid_scope", "scope must be scope tokens separated by single spaces.")
    scopes = allowed if requested is None else list(dict.fromkeys(requested.split(" ")))
    if not scopes or not set(scopes) <= set(allowed):
        raise OAuthError("invalid_scope", "The requested scope exceeds the credential's scopes.")
    if credential.agent_id is None:
        return await _issue_point_token(session, ring, settings, credential, scopes)
    agent = _check_usable(credential, await agents.find(session, credential.agent_id))
    if await domains.is_suspended(session, agent.domain):
        # The client has authenticated: saying why tells it nothing it could not learn from
        # POST /v1/decisions, and "authentication failed" would send it after its secret.
        raise invalid_client("The agent's domain is suspended.", public=True)
    version = await agents.active_version(session, agent.id)
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


async def _issue_point_token(
    session: AsyncSession,
    ring: SigningKeyRing,
    settings: Settings,
    credential: Credential,
    scopes: list[str],
) -> TokenResponse:
    """The token of an enforcement point's client (``control_plane.federation.tokens``)."""
    point = await point_tokens.point_of(session, credential)
    if point is None or credential.revoked_at is not None:
        raise invalid_client("The credential is revoked or has no enforcement point.")
    if credential.expires_at is not None and credential.expires_at <= utcnow():
        raise invalid_client("The credential has expired.")
    lifetime = settings.token_lifetime_seconds
    try:
        issued = point_tokens.issue_point_token(ring, settings, point, credential, scopes, lifetime)
    except KeyRingError as exc:
        raise ServiceUnavailable("No signing key is available; try again shortly.") from exc
    return TokenResponse(access_token=issued.token, expires_in=lifetime, scope=" ".join(scopes))


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
    # The leeway is for other verifiers' clocks; the issuer's own answer ends at exp.
    if verified is None or verified.expires_at <= time.time():
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


def auth_state_problem(state: AuthState) -> str | None:
    """Why a verified token must nonetheless be refused now, or None."""
    if state.token_revoked:
        return "the token is revoked"
    if state.credential_revoked:
        return "the credential is revoked"
    if state.credential_expires_at is not None and state.credential_expires_at <= utcnow():
        return "the credential has expired"
    if state.agent.status != AgentStatus.active:
        return "the agent is not active"
    if state.domain_suspended:
        return "the agent's domain is suspended"
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
    """RFC 7009: revoke ``token`` if it belongs to the authenticated client; an invalid or unknown
    token is answered with success; a token of another client raises ``unauthorized_client``."""
    verified = _verified_or_none(ring, settings, token)
    if verified is None:
        return
    if verified.client_id != str(credential.id):
        # RFC 7009 section 2.1: a token of another client is refused, not silently kept.
        raise OAuthError("unauthorized_client", "The token was not issued to this client.")
    expires = datetime.fromtimestamp(verified.expires_at + settings.token_leeway_seconds, UTC)
    await repository.revoke_token(session, verified.jti, credential.id, expires)

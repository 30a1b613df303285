"""RFC 9068 access tokens: minting and verifying them, and the strict compact-JWS parsing that
client assertions share.

- `issue_access_token` mints an access token with the key ring's current key.
- `verify_access_token` checks one on a protected route. It never trusts the header: the
  algorithm must be `EdDSA` or `ES256` (so `none`, HS256 signed with our public key and friends
  are refused before any key is touched), `kid` is only a lookup key in our own ring, `typ` must be
  `at+jwt`, and headers that name keys or key URLs (`jku`, `x5u`, `jwk`, `x5c`) make the token
  invalid. Then the signature, then `iss`, `aud`, `exp`, `nbf` and `iat` with at most 60 s leeway.

Every rejection is a `TokenError` whose `reason` comes from a closed set, usable as a metric
label. Messages never contain the token, a claim value or key material. Malformed input of any
shape ends in `TokenError`, never in another exception.

Why access tokens carrying `jku`/`x5u`/`jwk`/`x5c` are refused rather than merely ignored: we
are the only issuer, we never set them, and they are inside the signed header, so a token that
carries one was not minted by us. Refusing is as safe as ignoring and gives a clear reason in
logs. (Client assertions, minted by third-party libraries, may carry them: see `assertions`.)
Parsing, claim checks and the rejection reasons are in `jws`, shared with client assertions; the
names tests and callers use are re-exported here.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from joserfc import jws

from control_plane.crypto.jose import JWS_REGISTRY
from control_plane.crypto.jwk import is_safe_kid
from control_plane.crypto.signing import SigningKeyRing
from control_plane.oauth2.jws import (
    ACCESS_TOKEN_TYP,
    CLIENT_ASSERTION_TYPE,
    DEFAULT_LEEWAY_SECONDS,
    EXTENSION_HEADERS,
    MAX_ACCESS_TOKEN_LIFETIME_SECONDS,
    MAX_LEEWAY_SECONDS,
    MAX_TOKEN_LENGTH,
    TOKEN_ERROR_REASONS,
    ClientAssertionError,
    TokenError,
    TokenErrorReason,
    check_leeway,
    check_times,
    decode_object,
    header_alg,
    media_type,
    now_or,
    signature_valid,
    split_compact,
    string_claim,
)

__all__ = [
    "ACCESS_TOKEN_TYP",
    "CLIENT_ASSERTION_TYPE",
    "DEFAULT_LEEWAY_SECONDS",
    "MAX_LEEWAY_SECONDS",
    "MAX_TOKEN_LENGTH",
    "TOKEN_ERROR_REASONS",
    "ClientAssertionError",
    "IssuedAccessToken",
    "TokenError",
    "TokenErrorReason",
    "VerifiedAccessToken",
    "issue_access_token",
    "verify_access_token",
]

# Headers that name a key or where to fetch one (RFC 8725 section 3.10 and 2.8).
_ACCESS_TOKEN_FORBIDDEN_HEADERS: Final = ("jku", "x5u", "jwk", "x5c", *EXTENSION_HEADERS)


# --------------------------------------------------------------------------------------------
# Access tokens (RFC 9068)


class IssuedAccessToken(NamedTuple):
    """A freshly signed access token and the claims it carries (unpacks as `token, claims`)."""

    token: str
    claims: dict[str, Any]


_REGISTERED_CLAIMS: Final = frozenset(
    {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope"}
)
# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN_RE: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def issue_access_token(
    keyring: SigningKeyRing,
    *,
    issuer: str,
    audience: str,
    subject: str,
    client_id: str,
    scope: Sequence[str],
    lifetime_seconds: int,
    extra_claims: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> IssuedAccessToken:
    """Sign an RFC 9068 access token with the ring's current signing key.

    Header: `alg`, `kid`, `typ: at+jwt`. Claims: `iss`, `sub` (the agent id), `aud`, `exp`,
    `iat`, `jti` (128 random bits), `client_id`, `scope` (space-separated, duplicates removed),
    then `extra_claims` (domain, version, autonomy level ...), which may not override any of
    those. Raises ValueError for bad arguments, TypeError for extra claims that are not JSON,
    and `KeyRingError` when no key can sign now.
    """
    if not all(isinstance(v, str) and v for v in (issuer, audience, subject, client_id)):
        raise ValueError("issuer, audience, subject and client_id must be non-empty strings")
    if (
        isinstance(lifetime_seconds, bool)
        or not isinstance(lifetime_seconds, int)
        or not 0 < lifetime_seconds <= MAX_ACCESS_TOKEN_LIFETIME_SECONDS
    ):
        raise ValueError(
            f"lifetime_seconds must be an int in 1..{MAX_ACCESS_TOKEN_LIFETIME_SECONDS}"
        )
    if isinstance(scope, str):
        raise ValueError("scope must be a sequence of scope tokens, not a string")
    scopes = list(dict.fromkeys(scope))
    for item in scopes:
        if not isinstance(item, str) or _SCOPE_TOKEN_RE.fullmatch(item) is None:
            raise ValueError("scope tokens must be non-empty RFC 6749 scope-token strings")
    at = now_or(now)
    key = keyring.signing_key(at)
    issued_at = int(at)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": issued_at + lifetime_seconds,
        "iat": issued_at,
        "jti": secrets.token_urlsafe(16),
        "client_id": client_id,
        "scope": " ".join(scopes),
    }
    if extra_claims:
        clash = _REGISTERED_CLAIMS.intersection(extra_claims)
        if clash:
            raise ValueError(f"extra_claims may not set registered claims: {sorted(clash)}")
        claims.update(extra_claims)
    payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    token = jws.serialize_compact(
        {"alg": key.alg, "kid": key.kid, "typ": ACCESS_TOKEN_TYP},
        payload.encode("utf-8"),
        key.jose_key,
        registry=JWS_REGISTRY,
    )
    if len(token) > MAX_TOKEN_LENGTH:
        # Never mint what verify_access_token would refuse.
        raise ValueError("access token exceeds MAX_TOKEN_LENGTH; reduce extra_claims")
    return IssuedAccessToken(token, claims)


@dataclass(frozen=True, slots=True)
class VerifiedAccessToken:
    """The result of a successful `verify_access_token`. `claims` is a read-only view of every
    claim, extras included (it may be shared through the cache: do not mutate nested values)."""

    subject: str
    client_id: str
    jti: str
    scopes: tuple[str, ...]
    issued_at: float
    expires_at: float
    kid: str
    claims: Mapping[str, Any]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


def verify_access_token(
    keyring: SigningKeyRing,
    token: object,
    *,
    issuer: str,
    audience: str,
    leeway: float = DEFAULT_LEEWAY_SECONDS,
    now: float | None = None,
) -> VerifiedAccessToken:
    """Verify an access token minted by `issue_access_token`; raise `TokenError` otherwise.

    Order of checks: size and shape; `alg` in {EdDSA, ES256}; no `jku`/`x5u`/`jwk`/`x5c`/`crit`/
    `b64` header; `typ` is `at+jwt` (or `application/at+jwt`, any case); `kid` present, a safe
    token, known to the ring and not past `not_after`; `alg` equals the key's algorithm; the
    signature; then claims: `iss`, `aud` (a string, or a list containing `audience`), `exp` (now
    < exp + leeway), `nbf`/`iat` not after now + leeway, and `sub`, `client_id`, `jti` present.
    Does not check revocation or agent status: that is the caller's, on every request.
    """
    check_leeway(leeway)
    at = now_or(now)
    compact = split_compact(token)
    header = compact.header
    alg = header_alg(header)
    if any(name in header for name in _ACCESS_TOKEN_FORBIDDEN_HEADERS):
        raise TokenError("forbidden_header")
    if media_type(header.get("typ")) != ACCESS_TOKEN_TYP:
        raise TokenError("invalid_typ")
    if "kid" not in header:
        raise TokenError("missing_kid")
    kid = header["kid"]
    if not is_safe_kid(kid):
        raise TokenError("invalid_kid")
    key = keyring.verification_key(kid, at)
    if key is None:
        raise TokenError("unknown_kid")
    if key.alg != alg:
        raise TokenError("alg_mismatch")
    if not signature_valid(compact, alg, key.jose_key):
        raise TokenError("bad_signature")

    claims = decode_object(compact.payload_segment)
    if claims.get("iss") != issuer:
        raise TokenError("invalid_issuer")
    aud = claims.get("aud")
    if not (audience in aud if isinstance(aud, list) else aud == audience):
        raise TokenError("invalid_audience")
    exp = check_times(claims, at, leeway, iat_required=True)
    subject = string_claim(claims, "sub")
    client_id = string_claim(claims, "client_id")
    jti = string_claim(claims, "jti")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise TokenError("malformed")
    iat = claims["iat"]
    return VerifiedAccessToken(
        subject=subject,
        client_id=client_id,
        jti=jti,
        scopes=tuple(scope.split()),
        issued_at=iat,
        expires_at=exp,
        kid=kid,
        claims=MappingProxyType(claims),
    )

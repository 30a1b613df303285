"""Access tokens, client assertions, client secrets and the verified-token cache.

This is the cryptographic core behind `/oauth/token` and every agent route:

- `issue_access_token` mints an RFC 9068 JWT access token with the key ring's current key.
- `verify_access_token` checks one on a protected route. It never trusts the header: the
  algorithm must be `EdDSA` or `ES256` (so `none`, HS256 signed with our public key and friends
  are refused before any key is touched), `kid` is only a lookup key in our own ring, `typ` must be
  `at+jwt`, and headers that name keys or key URLs (`jku`, `x5u`, `jwk`, `x5c`) make the token
  invalid. Then the signature, then `iss`, `aud`, `exp`, `nbf` and `iat` with at most 60 s leeway.
- `verify_client_assertion` / `averify_client_assertion` check an RFC 7523 `private_key_jwt`
  assertion against the public key registered for that one client, and return the `jti` and
  `exp` that the caller must record so each assertion is used once.
- `generate_client_secret`, `hash_secret`, `verify_secret` handle `client_secret_basic`.
- `token_fingerprint` and `VerifiedTokenCache` let a route skip the signature check for a token
  it has already verified; revocation and agent status must still be checked by the caller on
  every request, so revocation always wins.

Every rejection is a `TokenError` (or its subclass `ClientAssertionError`) whose `reason` comes
from a closed set, usable as a metric label. Messages never contain the token, a claim value or
key material. Malformed input of any shape ends in `TokenError`, never in another exception.

Why access tokens carrying `jku`/`x5u`/`jwk`/`x5c` are refused rather than merely ignored: we
are the only issuer, we never set them, and they are inside the signed header, so a token that
carries one was not minted by us. Refusing is as safe as ignoring and gives a clear reason in
logs. Client assertions are minted by third-party client libraries, some of which add `x5c` or
`x5t`; there these headers are ignored: the only key ever used is the one registered for the
client named by `iss`/`sub`, and nothing is fetched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple, TypeAlias, get_args

from joserfc import jws

from ._jose import ALLOWED_ALGORITHMS, JWS_REGISTRY, b64decode, loads_json, verify_signature
from .keys import (
    InvalidClientJWK,
    PublicJWK,
    SigningKeyRing,
    is_safe_kid,
    parse_client_public_jwk,
)

__all__ = [
    "ACCESS_TOKEN_TYP",
    "CLIENT_ASSERTION_TYPE",
    "CLIENT_SECRET_PREFIX",
    "DEFAULT_LEEWAY_SECONDS",
    "MAX_LEEWAY_SECONDS",
    "MAX_TOKEN_LENGTH",
    "TOKEN_ERROR_REASONS",
    "AssertionClaims",
    "ClientAssertionError",
    "InvalidClientJWK",
    "IssuedAccessToken",
    "PublicJWK",
    "TokenError",
    "TokenErrorReason",
    "VerifiedAccessToken",
    "VerifiedTokenCache",
    "averify_client_assertion",
    "generate_client_secret",
    "hash_secret",
    "issue_access_token",
    "parse_client_public_jwk",
    "peek_assertion_client_id",
    "token_fingerprint",
    "verify_access_token",
    "verify_access_token_cached",
    "verify_client_assertion",
    "verify_secret",
]

#: Largest token (or assertion) accepted, in characters. Ours are well under 1 KiB.
MAX_TOKEN_LENGTH: Final = 8192
#: Clock-skew allowance bounds (issue 3: at most 60 s).
MAX_LEEWAY_SECONDS: Final = 60
DEFAULT_LEEWAY_SECONDS: Final = 30
#: RFC 9068 section 2.1 header `typ`.
ACCESS_TOKEN_TYP: Final = "at+jwt"  # noqa: S105 - a media type, not a secret
#: RFC 7523 `client_assertion_type` form value for `private_key_jwt`.
CLIENT_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Longest access-token lifetime `issue_access_token` agrees to mint.
MAX_ACCESS_TOKEN_LIFETIME_SECONDS: Final = 24 * 3600
#: An assertion's `exp` is at most one hour ahead: the common client defaults (Authlib's
#: `PrivateKeyJWT` signs for 3600 s) must interoperate. Replay is stopped by the `jti` record,
#: which the caller keeps until `exp` + leeway, not by a short window.
MAX_ASSERTION_LIFETIME_SECONDS: Final = 3600

TokenErrorReason: TypeAlias = Literal[
    "malformed",  # not a compact JWS with JSON header and claims, or a claim of the wrong type
    "too_large",  # longer than MAX_TOKEN_LENGTH
    "unsupported_alg",  # alg not EdDSA/ES256: none, HS*, RS*, missing ...
    "alg_mismatch",  # alg differs from the algorithm of the key named by kid
    "missing_kid",
    "invalid_kid",  # kid is not a short [A-Za-z0-9_-] token (paths, SQL, huge values)
    "unknown_kid",  # no such key in the ring, or the key is past not_after
    "forbidden_header",  # jku, x5u, jwk, x5c (access tokens), crit, b64
    "invalid_typ",
    "bad_signature",
    "invalid_issuer",
    "invalid_audience",
    "missing_claim",
    "expired",
    "not_yet_valid",  # nbf in the future beyond leeway
    "issued_in_future",  # iat in the future beyond leeway
    # client assertions only
    "issuer_subject_mismatch",  # iss != sub
    "client_id_mismatch",  # iss/sub differ from the client_id sent with the request
    "unknown_client",  # no public key registered for that client
    "exp_too_far",  # exp more than max_future_seconds ahead
]
#: All reasons, e.g. to pre-declare metric label values.
TOKEN_ERROR_REASONS: Final[frozenset[str]] = frozenset(get_args(TokenErrorReason))


class TokenError(Exception):
    """A token or assertion was refused. `reason` is a `TokenErrorReason`.

    The reason is meant for logs and metrics; an HTTP response should say `invalid_token` (or
    `invalid_client`) without it, so a prober does not learn which check failed.
    """

    def __init__(self, reason: TokenErrorReason) -> None:
        super().__init__(reason)
        self.reason: TokenErrorReason = reason

    def __str__(self) -> str:
        return f"token rejected: {self.reason}"


class ClientAssertionError(TokenError):
    """A `private_key_jwt` client assertion was refused (maps to OAuth `invalid_client`)."""

    def __str__(self) -> str:
        return f"client assertion rejected: {self.reason}"


def _now(now: float | None) -> float:
    return time.time() if now is None else float(now)


def _check_leeway(leeway: int | float) -> None:
    if not 0 <= leeway <= MAX_LEEWAY_SECONDS:
        raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds")


# --------------------------------------------------------------------------------------------
# Compact JWS parsing


@dataclass(frozen=True, slots=True)
class _Compact:
    header: dict[str, Any]
    payload_segment: str
    signature_segment: str
    signing_input: bytes


def _split(token: object) -> _Compact:
    """Split a compact JWS and decode its header; payload and signature stay encoded until a
    key has been chosen, so forged tokens cost as little as possible."""
    if isinstance(token, bytes):
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("too_large")
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise TokenError("malformed") from None
    if not isinstance(token, str):
        raise TokenError("malformed")
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("too_large")
    if not token.isascii():
        raise TokenError("malformed")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        # Five parts would be JWE; empty parts are detached or unsigned JWS. None of them is ours.
        raise TokenError("malformed")
    header_segment, payload_segment, signature_segment = parts
    header = _decode_object(header_segment)
    return _Compact(
        header=header,
        payload_segment=payload_segment,
        signature_segment=signature_segment,
        signing_input=f"{header_segment}.{payload_segment}".encode("ascii"),
    )


def _decode_object(segment: str) -> dict[str, Any]:
    try:
        value = loads_json(b64decode(segment))
    except (ValueError, RecursionError):
        raise TokenError("malformed") from None
    if not isinstance(value, dict):
        raise TokenError("malformed")
    return value


def _signature_valid(compact: _Compact, alg: str, key: Any) -> bool:
    try:
        signature = b64decode(compact.signature_segment)
    except ValueError:
        raise TokenError("malformed") from None
    return verify_signature(alg, key, compact.signing_input, signature)


def _header_alg(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise TokenError("unsupported_alg")
    return alg


# `crit` asks us to understand extensions we do not implement; `b64: false` (RFC 7797) changes
# what is signed. Neither is ever legitimate here.
_EXTENSION_HEADERS: Final = ("crit", "b64")
# Headers that name a key or where to fetch one (RFC 8725 section 3.10 and 2.8).
_ACCESS_TOKEN_FORBIDDEN_HEADERS: Final = ("jku", "x5u", "jwk", "x5c", *_EXTENSION_HEADERS)


def _media_type(value: object) -> str | None:
    """`typ` compared case-insensitively, with the optional `application/` prefix removed
    (RFC 7515 section 4.1.9)."""
    if not isinstance(value, str):
        return None
    lowered = value.lower()
    return lowered.removeprefix("application/")


_MAX_SAFE_INT: Final = 2**53


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    """The NumericDate claim `name`, or None when absent."""
    if name not in claims:
        return None
    value = claims[name]
    # NumericDate is a finite JSON number. bool is an int in Python; huge ints would overflow
    # float arithmetic, and nothing real lies beyond 2**53 seconds.
    if isinstance(value, bool):
        raise TokenError("malformed")
    if isinstance(value, int):
        if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            raise TokenError("malformed")
        return value
    if not isinstance(value, float) or not math.isfinite(value):
        raise TokenError("malformed")
    return value


def _string(claims: Mapping[str, Any], name: str) -> str:
    """The required non-empty string claim `name`."""
    if name not in claims:
        raise TokenError("missing_claim")
    value = claims[name]
    if not isinstance(value, str) or not value:
        raise TokenError("malformed")
    return value


def _check_times(
    claims: Mapping[str, Any], at: float, leeway: float, *, iat_required: bool
) -> float:
    exp = _number(claims, "exp")
    if exp is None:
        raise TokenError("missing_claim")
    if at >= exp + leeway:
        raise TokenError("expired")
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf > at + leeway:
        raise TokenError("not_yet_valid")
    iat = _number(claims, "iat")
    if iat is None:
        if iat_required:
            raise TokenError("missing_claim")
    elif iat > at + leeway:
        raise TokenError("issued_in_future")
    return exp


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
    at = _now(now)
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
    _check_leeway(leeway)
    at = _now(now)
    compact = _split(token)
    header = compact.header
    alg = _header_alg(header)
    if any(name in header for name in _ACCESS_TOKEN_FORBIDDEN_HEADERS):
        raise TokenError("forbidden_header")
    if _media_type(header.get("typ")) != ACCESS_TOKEN_TYP:
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
    if not _signature_valid(compact, alg, key.jose_key):
        raise TokenError("bad_signature")

    claims = _decode_object(compact.payload_segment)
    if claims.get("iss") != issuer:
        raise TokenError("invalid_issuer")
    aud = claims.get("aud")
    if not (audience in aud if isinstance(aud, list) else aud == audience):
        raise TokenError("invalid_audience")
    exp = _check_times(claims, at, leeway, iat_required=True)
    subject = _string(claims, "sub")
    client_id = _string(claims, "client_id")
    jti = _string(claims, "jti")
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


# --------------------------------------------------------------------------------------------
# Client assertions (RFC 7523 private_key_jwt)


@dataclass(frozen=True, slots=True)
class AssertionClaims:
    """A verified client assertion. Record `jti` (one-time use, across replicas) until `exp`
    plus leeway before trusting the client."""

    client_id: str
    jti: str
    exp: float


# When present: plain JWT, or the explicit type proposed by draft-ietf-oauth-rfc7523bis. Anything
# else, `at+jwt` in particular, is some other kind of token being replayed at the token endpoint.
_ASSERTION_TYPS: Final = frozenset({"jwt", "client-authentication+jwt"})
_MAX_CLIENT_ID: Final = 255
_MAX_JTI: Final = 255


@dataclass(frozen=True, slots=True)
class _Assertion:
    compact: _Compact
    alg: str
    claims: dict[str, Any]
    client_id: str


def _parse_assertion(assertion: object, client_id_hint: str | None) -> _Assertion:
    """Everything that can be checked before the client's key is looked up. The claims are
    unverified here and are only used to name the client whose key will check them."""
    compact = _split(assertion)
    header = compact.header
    alg = _header_alg(header)
    if any(name in header for name in _EXTENSION_HEADERS):
        raise TokenError("forbidden_header")
    if "typ" in header and _media_type(header["typ"]) not in _ASSERTION_TYPS:
        raise TokenError("invalid_typ")
    claims = _decode_object(compact.payload_segment)
    iss = _string(claims, "iss")
    sub = _string(claims, "sub")
    if iss != sub:
        raise TokenError("issuer_subject_mismatch")
    if len(iss) > _MAX_CLIENT_ID or not iss.isprintable():
        raise TokenError("malformed")
    if client_id_hint is not None and client_id_hint != iss:
        raise TokenError("client_id_mismatch")
    return _Assertion(compact=compact, alg=alg, claims=claims, client_id=iss)


def _finish_assertion(
    parsed: _Assertion,
    jwk: PublicJWK | None,
    *,
    token_endpoint_url: str,
    issuer: str | None,
    at: float,
    max_future_seconds: int,
    leeway: float,
    extra_audiences: Collection[str] = (),
) -> AssertionClaims:
    if jwk is None:
        raise TokenError("unknown_client")
    if jwk.alg != parsed.alg:
        raise TokenError("alg_mismatch")
    if not _signature_valid(parsed.compact, parsed.alg, jwk.jose_key):
        raise TokenError("bad_signature")
    claims = parsed.claims
    # draft-ietf-oauth-rfc7523bis: one audience, as a string. A single-element list is still
    # accepted for RFC 7523 clients; several audiences would make the assertion replayable.
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) == 1:
        aud = aud[0]
    accepted = {token_endpoint_url, *extra_audiences}
    if issuer is not None:
        accepted.add(issuer)
    if not isinstance(aud, str) or aud not in accepted:
        raise TokenError("invalid_audience")
    exp = _check_times(claims, at, leeway, iat_required=False)
    if exp > at + max_future_seconds + leeway:
        raise TokenError("exp_too_far")
    jti = _string(claims, "jti")
    if len(jti) > _MAX_JTI:
        raise TokenError("malformed")
    return AssertionClaims(client_id=parsed.client_id, jti=jti, exp=exp)


def _check_assertion_args(max_future_seconds: int, leeway: float) -> None:
    _check_leeway(leeway)
    if not 0 < max_future_seconds <= MAX_ASSERTION_LIFETIME_SECONDS:
        raise ValueError(f"max_future_seconds must be in 1..{MAX_ASSERTION_LIFETIME_SECONDS}")


def peek_assertion_client_id(assertion: object, client_id_hint: str | None = None) -> str:
    """The client id an assertion claims to come from (`iss` == `sub`), UNVERIFIED: use it only
    to look up that client's key. Raises `ClientAssertionError` for malformed assertions."""
    try:
        return _parse_assertion(assertion, client_id_hint).client_id
    except ClientAssertionError:
        raise
    except TokenError as error:
        raise ClientAssertionError(error.reason) from None


def verify_client_assertion(
    assertion: object,
    *,
    client_id_hint: str | None,
    lookup_client_jwk: Callable[[str], PublicJWK | None],
    token_endpoint_url: str,
    issuer: str | None = None,
    now: float | None = None,
    max_future_seconds: int = MAX_ASSERTION_LIFETIME_SECONDS,
    leeway: float = DEFAULT_LEEWAY_SECONDS,
    extra_audiences: Collection[str] = (),
) -> AssertionClaims:
    """Verify a `private_key_jwt` client assertion; raise `ClientAssertionError` otherwise.

    Checks: shape and size; `alg` in {EdDSA, ES256}; no `crit`/`b64`; `typ` absent, `JWT` or
    `client-authentication+jwt` (so an access token, `at+jwt`, is refused); `iss` == `sub`, equal
    to `client_id_hint` when the request named a client; the signature by the key that
    `lookup_client_jwk(client_id)` returns for THAT client (None: `unknown_client`), whose
    algorithm must match `alg`; `aud` is `token_endpoint_url`, `issuer` when given (the value
    draft-ietf-oauth-rfc7523bis asks clients to use) or one of `extra_audiences` (the URL of the
    endpoint the assertion was sent to); `exp` present, not passed, and at most
    `max_future_seconds` (+ leeway) ahead; `nbf`/`iat` not in the future; `jti` present.
    `jku`/`x5u`/`jwk`/`x5c`/`kid` headers play no part in choosing the key and nothing is fetched.

    The caller must then record `jti` until `exp` + leeway and refuse a `jti` seen before.
    Exceptions raised by `lookup_client_jwk` propagate unchanged.
    """
    _check_assertion_args(max_future_seconds, leeway)
    at = _now(now)
    try:
        parsed = _parse_assertion(assertion, client_id_hint)
        jwk = lookup_client_jwk(parsed.client_id)
        return _finish_assertion(
            parsed,
            jwk,
            token_endpoint_url=token_endpoint_url,
            issuer=issuer,
            at=at,
            max_future_seconds=max_future_seconds,
            leeway=leeway,
            extra_audiences=extra_audiences,
        )
    except ClientAssertionError:
        raise
    except TokenError as error:
        raise ClientAssertionError(error.reason) from None


async def averify_client_assertion(
    assertion: object,
    *,
    client_id_hint: str | None,
    lookup_client_jwk: Callable[[str], Awaitable[PublicJWK | None]],
    token_endpoint_url: str,
    issuer: str | None = None,
    now: float | None = None,
    max_future_seconds: int = MAX_ASSERTION_LIFETIME_SECONDS,
    leeway: float = DEFAULT_LEEWAY_SECONDS,
    extra_audiences: Collection[str] = (),
) -> AssertionClaims:
    """`verify_client_assertion` with an async key lookup (a database query)."""
    _check_assertion_args(max_future_seconds, leeway)
    at = _now(now)
    try:
        parsed = _parse_assertion(assertion, client_id_hint)
        jwk = await lookup_client_jwk(parsed.client_id)
        return _finish_assertion(
            parsed,
            jwk,
            token_endpoint_url=token_endpoint_url,
            issuer=issuer,
            at=at,
            max_future_seconds=max_future_seconds,
            leeway=leeway,
            extra_audiences=extra_audiences,
        )
    except ClientAssertionError:
        raise
    except TokenError as error:
        raise ClientAssertionError(error.reason) from None


# --------------------------------------------------------------------------------------------
# Client secrets

#: Recognisable prefix so secret scanners and log filters can spot leaked client secrets.
CLIENT_SECRET_PREFIX: Final = "acp_cs_"  # noqa: S105 - public prefix
_SECRET_SCHEME: Final = "sha256"  # noqa: S105 - hash scheme name
_MAX_SECRET_LENGTH: Final = 512


def generate_client_secret() -> str:
    """A new client secret: `acp_cs_` followed by 256 random bits in base64url (43 chars)."""
    return CLIENT_SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The value to store for a client secret: `sha256$<hex digest>`.

    A slow password hash (bcrypt, scrypt, Argon2) exists to make guessing low-entropy human
    passwords expensive. Our secrets are 256-bit random values: there is nothing to guess, and a
    preimage of SHA-256 is out of reach, so a single SHA-256 is as strong as any KDF here while
    costing microseconds instead of tens of milliseconds on every token request (and not handing
    attackers a cheap CPU-exhaustion lever on the token endpoint). The scheme prefix leaves room
    to change this later without a flag day.
    """
    if not isinstance(secret, str) or not secret:
        raise ValueError("secret must be a non-empty string")
    return f"{_SECRET_SCHEME}${hashlib.sha256(secret.encode('utf-8')).hexdigest()}"


def verify_secret(secret: object, stored: str) -> bool:
    """True when `secret` hashes to `stored`; the comparison is constant-time. Any malformed
    input (wrong type, unknown scheme, undecodable text) is simply False."""
    if not isinstance(secret, str) or not isinstance(stored, str):
        return False
    if not secret or len(secret) > _MAX_SECRET_LENGTH:
        return False
    scheme, separator, expected = stored.partition("$")
    if scheme != _SECRET_SCHEME or not separator:
        return False
    try:
        candidate = hashlib.sha256(secret.encode("utf-8")).hexdigest().encode("ascii")
        return hmac.compare_digest(candidate, expected.encode("utf-8"))
    except UnicodeEncodeError:
        return False


def token_fingerprint(token: str | bytes) -> str:
    """SHA-256 hex of a token, for cache keys and logs in place of the token itself.

    Do not use it as the key of a revocation list: an ES256 signature can be rewritten into a
    second valid one (s -> n - s), which yields another string and another fingerprint for the
    same token. Revoke by `jti`.
    """
    data = token.encode("utf-8", "surrogatepass") if isinstance(token, str) else token
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Verified-token cache


@dataclass(frozen=True, slots=True)
class _CacheEntry:
    verified: VerifiedAccessToken
    issuer: str
    audience: str
    valid_until: float


class VerifiedTokenCache:
    """LRU of verified access tokens keyed by SHA-256 of the token.

    An entry lives until the token's `exp` (without leeway) and at most `max_ttl_seconds`, and
    remembers the issuer and audience it was verified for. Safe to share between threads and
    coroutines: every operation takes a lock for a few dictionary operations and never awaits.
    Revocation and agent status are NOT part of it: the caller checks them on every request, hit
    or miss, which is what lets revocation win within its own staleness bound.
    """

    def __init__(self, max_entries: int = 10_000, max_ttl_seconds: float = 300.0) -> None:
        if max_entries < 1 or max_ttl_seconds <= 0:
            raise ValueError("max_entries and max_ttl_seconds must be positive")
        self._max_entries = max_entries
        self._max_ttl = max_ttl_seconds
        self._entries: OrderedDict[bytes, _CacheEntry] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(
        self, token: str, *, issuer: str, audience: str, now: float | None = None
    ) -> VerifiedAccessToken | None:
        """The cached verification of `token` for this issuer and audience, if still fresh."""
        key = self._key(token)
        at = _now(now)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if at >= entry.valid_until:
                del self._entries[key]
                return None
            if entry.issuer != issuer or entry.audience != audience:
                return None
            self._entries.move_to_end(key)
            return entry.verified

    def put(
        self,
        token: str,
        verified: VerifiedAccessToken,
        *,
        issuer: str,
        audience: str,
        now: float | None = None,
    ) -> None:
        at = _now(now)
        valid_until = min(verified.expires_at, at + self._max_ttl)
        if valid_until <= at:
            return
        entry = _CacheEntry(verified, issuer, audience, valid_until)
        key = self._key(token)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def discard(self, token: str) -> None:
        with self._lock:
            self._entries.pop(self._key(token), None)

    def clear(self) -> None:
        """Drop everything, e.g. after removing a compromised signing key from the ring."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def verify_access_token_cached(
    cache: VerifiedTokenCache,
    keyring: SigningKeyRing,
    token: object,
    *,
    issuer: str,
    audience: str,
    leeway: float = DEFAULT_LEEWAY_SECONDS,
    now: float | None = None,
) -> VerifiedAccessToken:
    """`verify_access_token` through `cache`. A hit is only served while the key that signed the
    token is still in `keyring`, so pulling a key out of the ring stops its tokens at once."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        # Hash nothing unbounded or odd; let the full check produce the precise reason.
        return verify_access_token(
            keyring, token, issuer=issuer, audience=audience, leeway=leeway, now=now
        )
    at = _now(now)
    hit = cache.get(token, issuer=issuer, audience=audience, now=at)
    if hit is not None:
        if keyring.verification_key(hit.kid, at) is not None:
            return hit
        cache.discard(token)
    verified = verify_access_token(
        keyring, token, issuer=issuer, audience=audience, leeway=leeway, now=at
    )
    cache.put(token, verified, issuer=issuer, audience=audience, now=at)
    return verified

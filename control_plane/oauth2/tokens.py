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

The claim checks are written out rather than delegated to joserfc's claims registry: the closed
set of rejection reasons (and the NumericDate strictness: no bools, no NaN, nothing beyond 2**53)
is part of the contract that tests and metrics rely on.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple, TypeAlias, get_args

from joserfc import jws

from control_plane.crypto.jose import (
    ALLOWED_ALGORITHMS,
    JWS_REGISTRY,
    b64decode,
    loads_json,
    verify_signature,
)
from control_plane.crypto.jwk import (
    is_safe_kid,
)
from control_plane.crypto.signing import (
    SigningKeyRing,
)

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
#: Issue 3: an assertion's `exp` is at most 5 minutes ahead.
MAX_ASSERTION_LIFETIME_SECONDS: Final = 300

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


def now_or(now: float | None) -> float:
    return time.time() if now is None else float(now)


def check_leeway(leeway: int | float) -> None:
    if not 0 <= leeway <= MAX_LEEWAY_SECONDS:
        raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY_SECONDS} seconds")


# --------------------------------------------------------------------------------------------
# Compact JWS parsing


@dataclass(frozen=True, slots=True)
class Compact:
    header: dict[str, Any]
    payload_segment: str
    signature_segment: str
    signing_input: bytes


def split_compact(token: object) -> Compact:
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
    header = decode_object(header_segment)
    return Compact(
        header=header,
        payload_segment=payload_segment,
        signature_segment=signature_segment,
        signing_input=f"{header_segment}.{payload_segment}".encode("ascii"),
    )


def decode_object(segment: str) -> dict[str, Any]:
    try:
        value = loads_json(b64decode(segment))
    except (ValueError, RecursionError):
        raise TokenError("malformed") from None
    if not isinstance(value, dict):
        raise TokenError("malformed")
    return value


def signature_valid(compact: Compact, alg: str, key: Any) -> bool:
    try:
        signature = b64decode(compact.signature_segment)
    except ValueError:
        raise TokenError("malformed") from None
    return verify_signature(alg, key, compact.signing_input, signature)


def header_alg(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise TokenError("unsupported_alg")
    return alg


# `crit` asks us to understand extensions we do not implement; `b64: false` (RFC 7797) changes
# what is signed. Neither is ever legitimate here.
EXTENSION_HEADERS: Final = ("crit", "b64")
# Headers that name a key or where to fetch one (RFC 8725 section 3.10 and 2.8).
_ACCESS_TOKEN_FORBIDDEN_HEADERS: Final = ("jku", "x5u", "jwk", "x5c", *EXTENSION_HEADERS)


def media_type(value: object) -> str | None:
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


def string_claim(claims: Mapping[str, Any], name: str) -> str:
    """The required non-empty string claim `name`."""
    if name not in claims:
        raise TokenError("missing_claim")
    value = claims[name]
    if not isinstance(value, str) or not value:
        raise TokenError("malformed")
    return value


def check_times(
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

"""Strict compact-JWS parsing and claim checks shared by access tokens and client assertions,
and the closed set of rejection reasons (`TokenError`).

The claim checks are written out rather than delegated to joserfc's claims registry: the closed
set of rejection reasons (and the NumericDate strictness: no bools, no NaN, nothing beyond 2**53)
is part of the contract that tests and metrics rely on. joserfc does the signatures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, get_args

from control_plane.crypto.jose import ALLOWED_ALGORITHMS, b64decode, loads_json, verify_signature

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

"""RFC 7523 `private_key_jwt` client assertions, verified against the one key registered for the
client they name.

Client assertions are minted by third-party client libraries, some of which add `x5c` or `x5t`;
these headers are ignored: the only key ever used is the one registered for the client named by
`iss`/`sub`, and nothing is fetched. The caller records the returned `jti` until `exp` so each
assertion is used once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, Final

from control_plane.crypto.jwk import PublicJWK
from control_plane.oauth2.jws import (
    DEFAULT_LEEWAY_SECONDS,
    EXTENSION_HEADERS,
    MAX_ASSERTION_LIFETIME_SECONDS,
    ClientAssertionError,
    Compact,
    TokenError,
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
    compact: Compact
    alg: str
    claims: dict[str, Any]
    client_id: str


def _parse_assertion(assertion: object, client_id_hint: str | None) -> _Assertion:
    """Everything that can be checked before the client's key is looked up. The claims are
    unverified here and are only used to name the client whose key will check them."""
    compact = split_compact(assertion)
    header = compact.header
    alg = header_alg(header)
    if any(name in header for name in EXTENSION_HEADERS):
        raise TokenError("forbidden_header")
    if "typ" in header and media_type(header["typ"]) not in _ASSERTION_TYPS:
        raise TokenError("invalid_typ")
    claims = decode_object(compact.payload_segment)
    iss = string_claim(claims, "iss")
    sub = string_claim(claims, "sub")
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
    if not signature_valid(parsed.compact, parsed.alg, jwk.jose_key):
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
    exp = check_times(claims, at, leeway, iat_required=False)
    if exp > at + max_future_seconds + leeway:
        raise TokenError("exp_too_far")
    jti = string_claim(claims, "jti")
    if len(jti) > _MAX_JTI:
        raise TokenError("malformed")
    return AssertionClaims(client_id=parsed.client_id, jti=jti, exp=exp)


def _check_assertion_args(max_future_seconds: int, leeway: float) -> None:
    check_leeway(leeway)
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


async def verify_client_assertion(
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
    Exceptions raised by `lookup_client_jwk` (an async database lookup) propagate unchanged.
    """
    _check_assertion_args(max_future_seconds, leeway)
    at = now_or(now)
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

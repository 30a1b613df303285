"""Property tests: whatever arrives, verification ends in success or a typed error.

Random text and bytes, random mutations of valid tokens, and correctly signed tokens with random
headers and claims go through `verify_access_token`, `verify_client_assertion` and
`parse_client_public_jwk`. Any exception other than the typed ones fails the property, and so
does a mutated token that still verifies.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from control_plane.crypto.jwk import InvalidClientJWK, PublicJWK, parse_client_public_jwk
from control_plane.crypto.signing import KeyRecord, SigningKey, SigningKeyRing, generate_signing_key
from control_plane.oauth2.assertions import verify_client_assertion
from control_plane.oauth2.tokens import (
    TOKEN_ERROR_REASONS,
    ClientAssertionError,
    TokenError,
    issue_access_token,
    verify_access_token,
)
from tests.fixtures.jose import AUDIENCE, ISSUER, NOW, TOKEN_ENDPOINT, raw_sign

# database=None: no .hypothesis example store in the repository; failures print their example.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Built once: hypothesis runs each body hundreds of times and these never change.
_ED = generate_signing_key("EdDSA")
_ES = generate_signing_key("ES256")


def _record(key: SigningKey) -> KeyRecord:
    created = datetime.fromtimestamp(NOW - 60, UTC)
    return KeyRecord(key.kid, key.alg, key.public_jwk(), created, private_key=key)


_RINGS = {"EdDSA": SigningKeyRing([_record(_ED)]), "ES256": SigningKeyRing([_record(_ES)])}
_CLIENT_KEYS: dict[str, PublicJWK] = {
    "client-ed": parse_client_public_jwk(_ED.public_jwk()),
    "client-es": parse_client_public_jwk(_ES.public_jwk()),
}


def _token(alg: str) -> str:
    token, _ = issue_access_token(
        _RINGS[alg],
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="agent-1",
        client_id="client-1",
        scope=["decisions:create"],
        lifetime_seconds=600,
        extra_claims={"domain": "payments"},
        now=NOW,
    )
    return token


_VALID = {alg: _token(alg) for alg in _RINGS}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(key: SigningKey, header: Any, claims: Any) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(raw_sign(key, signing_input.encode()))}"


def _access(token: Any, alg: str = "EdDSA") -> Any:
    """The verification result, or None after a TokenError with a known reason. Any other
    exception escapes and fails the property."""
    reason = None
    try:
        return verify_access_token(_RINGS[alg], token, issuer=ISSUER, audience=AUDIENCE, now=NOW)
    except TokenError as error:
        reason = error.reason
    assert reason in TOKEN_ERROR_REASONS
    return None


async def _lookup(client_id: str) -> Any:
    return _CLIENT_KEYS.get(client_id)


def _assertion(assertion: Any) -> Any:
    reason = None
    try:
        return asyncio.run(
            verify_client_assertion(
                assertion,
                client_id_hint=None,
                lookup_client_jwk=_lookup,
                token_endpoint_url=TOKEN_ENDPOINT,
                now=NOW,
            )
        )
    except ClientAssertionError as error:
        reason = error.reason
    assert reason in TOKEN_ERROR_REASONS
    return None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

interesting_header_values = st.one_of(
    json_values,
    st.sampled_from(
        ["EdDSA", "ES256", "none", "HS256", "at+jwt", "JWT", _ED.kid, _ES.kid, "../x", ""]
    ),
)
header_names = st.sampled_from(
    ["alg", "kid", "typ", "jku", "jwk", "x5u", "x5c", "crit", "b64", "cty", "zip", "enc"]
)
claim_names = st.sampled_from(
    ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "extra"]
)
interesting_claim_values = st.one_of(
    json_values,
    st.sampled_from(
        [ISSUER, AUDIENCE, TOKEN_ENDPOINT, "client-ed", "client-es", NOW, NOW + 60, NOW - 60]
    ),
    st.integers(min_value=NOW - 1000, max_value=NOW + 1000),
)


# --- access tokens -------------------------------------------------------------------------


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_random_input_is_refused_with_a_typed_error(value: str | bytes) -> None:
    assert _access(value) is None


@FUZZ
@given(
    st.lists(
        st.text(
            alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=60
        ),
        min_size=1,
        max_size=6,
    )
)
def test_random_base64ish_segments_are_refused(segments: list[str]) -> None:
    assert _access(".".join(segments)) is None


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, str]:
    alg = draw(st.sampled_from(sorted(_VALID)))
    token = _VALID[alg]
    kind = draw(st.sampled_from(["replace", "insert", "delete", "swap", "truncate", "dup"]))
    i = draw(st.integers(min_value=0, max_value=len(token) - 1))
    char = draw(st.characters(codec="ascii"))
    if kind == "replace":
        mutated = token[:i] + char + token[i + 1 :]
    elif kind == "insert":
        mutated = token[:i] + char + token[i:]
    elif kind == "delete":
        mutated = token[:i] + token[i + 1 :]
    elif kind == "swap":
        j = draw(st.integers(min_value=0, max_value=len(token) - 1))
        chars = list(token)
        chars[i], chars[j] = chars[j], chars[i]
        mutated = "".join(chars)
    elif kind == "truncate":
        mutated = token[:i]
    else:
        parts = token.split(".")
        k = draw(st.integers(min_value=0, max_value=2))
        mutated = ".".join([*parts[:k], parts[k], *parts[k:]])
    return alg, mutated


@FUZZ
@given(mutations())
def test_mutated_tokens_never_verify(case: tuple[str, str]) -> None:
    alg, mutated = case
    assume(mutated != _VALID[alg])
    assert _access(mutated, alg) is None


@FUZZ
@given(
    st.dictionaries(header_names, interesting_header_values, max_size=6),
    st.dictionaries(claim_names, interesting_claim_values, max_size=10),
    st.sampled_from(["EdDSA", "ES256"]),
)
def test_signed_tokens_with_random_headers_and_claims(
    header: dict[str, Any], claims: dict[str, Any], alg: str
) -> None:
    key = _ED if alg == "EdDSA" else _ES
    result = _access(_sign(key, header, claims), alg)
    if result is not None:
        # Success is only possible when every rule held.
        assert header.get("alg") == alg
        assert header.get("kid") == key.kid
        assert str(header.get("typ")).lower().removeprefix("application/") == "at+jwt"
        assert not {"jku", "jwk", "x5u", "x5c", "crit", "b64"} & header.keys()
        assert claims.get("iss") == ISSUER
        assert claims["exp"] + 30 > NOW


# --- client assertions ---------------------------------------------------------------------


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300), st.none(), st.integers()))
def test_random_assertions_are_refused_with_a_typed_error(value: Any) -> None:
    assert _assertion(value) is None


@FUZZ
@given(
    st.dictionaries(header_names, interesting_header_values, max_size=6),
    st.dictionaries(claim_names, interesting_claim_values, max_size=10),
    st.sampled_from(["client-ed", "client-es"]),
)
def test_signed_assertions_with_random_headers_and_claims(
    header: dict[str, Any], claims: dict[str, Any], client: str
) -> None:
    key = _ED if client == "client-ed" else _ES
    result = _assertion(_sign(key, header, claims))
    if result is not None:
        assert result.client_id == claims["iss"] == claims["sub"]
        assert _CLIENT_KEYS[result.client_id].alg == key.alg
        assert claims["aud"] in (TOKEN_ENDPOINT, [TOKEN_ENDPOINT])
        assert NOW - 30 < result.exp <= NOW + 330


@FUZZ
@given(mutations())
def test_access_tokens_never_pass_as_assertions(case: tuple[str, str]) -> None:
    _, token = case
    assert _assertion(token) is None


# --- registered JWKs -----------------------------------------------------------------------


jwk_members = st.dictionaries(
    st.sampled_from(
        ["kty", "crv", "x", "y", "d", "k", "alg", "use", "key_ops", "kid", "keys", "n"]
    ),
    st.one_of(
        json_values,
        st.sampled_from(["OKP", "EC", "oct", "RSA", "Ed25519", "P-256", "X25519", "sig", "EdDSA"]),
        st.binary(min_size=0, max_size=40).map(_b64),
        st.just(_ED.public_jwk()["x"]),
        st.just(_ES.public_jwk()["x"]),
        st.just(_ES.public_jwk()["y"]),
    ),
    max_size=8,
)


@FUZZ
@given(st.one_of(jwk_members, json_values, st.text(max_size=200)))
def test_parse_client_public_jwk_only_raises_invalid_client_jwk(value: Any) -> None:
    try:
        jwk = parse_client_public_jwk(value)
    except InvalidClientJWK:
        return
    assert "d" not in jwk.as_dict()
    assert jwk.alg in {"EdDSA", "ES256"}

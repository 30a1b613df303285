"""Access tokens: issuance (RFC 9068 shape), interop with PyJWT, and every header/claim attack
from issue 3 that can be exercised without HTTP."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization

from control_plane.crypto.signing import KeyRecord, SigningKey, SigningKeyRing
from control_plane.oauth2.tokens import (
    MAX_TOKEN_LENGTH,
    TokenError,
    issue_access_token,
    verify_access_token,
)
from tests.fixtures.jose import AUDIENCE, ISSUER, NOW

Claims = Callable[..., dict[str, Any]]


def _segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def _issue(ring: SigningKeyRing, **overrides: Any) -> tuple[str, dict[str, Any]]:
    args: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "subject": "agent-1",
        "client_id": "client-1",
        "scope": ["decisions:create", "audit:write"],
        "lifetime_seconds": 600,
        "extra_claims": {"domain": "payments", "version": "1.4.0", "autonomy_level": 2},
        "now": NOW,
    }
    args.update(overrides)
    return issue_access_token(ring, **args)


def _verify(ring: SigningKeyRing, token: Any, **overrides: Any) -> Any:
    args: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "now": NOW}
    args.update(overrides)
    return verify_access_token(ring, token, **args)


def _reason(ring: SigningKeyRing, token: Any, **overrides: Any) -> str:
    with pytest.raises(TokenError) as caught:
        _verify(ring, token, **overrides)
    assert type(caught.value) is TokenError
    return caught.value.reason


# --- issuance ------------------------------------------------------------------------------


def test_issued_token_follows_rfc_9068(ring: SigningKeyRing, ed_key: SigningKey) -> None:
    token, claims = _issue(ring)

    assert _segment(token, 0) == {"alg": "EdDSA", "kid": ed_key.kid, "typ": "at+jwt"}
    assert _segment(token, 1) == claims
    assert claims["iss"] == ISSUER
    assert claims["sub"] == "agent-1"
    assert claims["aud"] == AUDIENCE
    assert claims["client_id"] == "client-1"
    assert claims["iat"] == NOW
    assert claims["exp"] == NOW + 600
    assert claims["scope"] == "decisions:create audit:write"
    assert claims["domain"] == "payments"
    assert claims["autonomy_level"] == 2
    assert len(claims["jti"]) >= 22  # 128 random bits


def test_jti_is_unique(ring: SigningKeyRing) -> None:
    assert len({_issue(ring)[1]["jti"] for _ in range(200)}) == 200


def test_issued_token_verifies(ring: SigningKeyRing, ed_key: SigningKey) -> None:
    token, claims = _issue(ring)

    verified = _verify(ring, token)

    assert verified.subject == "agent-1"
    assert verified.client_id == "client-1"
    assert verified.jti == claims["jti"]
    assert verified.scopes == ("decisions:create", "audit:write")
    assert verified.has_scope("audit:write")
    assert not verified.has_scope("bundles:read")
    assert verified.expires_at == NOW + 600
    assert verified.kid == ed_key.kid
    assert dict(verified.claims) == claims


@pytest.mark.parametrize("clash", ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope"])
def test_extra_claims_cannot_override_registered_claims(ring: SigningKeyRing, clash: str) -> None:
    with pytest.raises(ValueError, match="registered claims"):
        _issue(ring, extra_claims={clash: "x"})


@pytest.mark.parametrize("scope", [["has space"], [""], ['quo"te'], "decisions:create"])
def test_invalid_scopes_are_refused(ring: SigningKeyRing, scope: Any) -> None:
    with pytest.raises(ValueError, match="scope"):
        _issue(ring, scope=scope)


@pytest.mark.parametrize("lifetime", [0, -5, 86_401, 1.5, True])
def test_invalid_lifetimes_are_refused(ring: SigningKeyRing, lifetime: Any) -> None:
    with pytest.raises(ValueError, match="lifetime"):
        _issue(ring, lifetime_seconds=lifetime)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_pyjwt_verifies_our_token_from_the_jwks_alone(
    alg: str, ed_key: SigningKey, es_key: SigningKey, make_record: Callable[..., KeyRecord]
) -> None:
    key = ed_key if alg == "EdDSA" else es_key
    # PyJWT checks exp and iat against the real clock, so this test lives in real time.
    ring = SigningKeyRing([make_record(key, time.time() - 60)])
    token, claims = _issue(ring, now=None)
    published = json.loads(json.dumps(ring.jwks()))  # what /.well-known/jwks.json serves

    jwk = pyjwt.PyJWKSet.from_dict(published)[pyjwt.get_unverified_header(token)["kid"]]
    decoded = pyjwt.decode(
        token,
        jwk.key,
        algorithms=[alg],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )

    assert decoded == claims
    assert pyjwt.get_unverified_header(token)["typ"] == "at+jwt"


# --- algorithm attacks ---------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", [b"", b"\x00" * 64])
def test_alg_none_is_refused(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims, alg: str, signature: bytes
) -> None:
    header = {"alg": alg, "kid": ed_key.kid, "typ": "at+jwt"}
    token = forge.compact(header, claims(), signature)
    if not signature:
        # "header.payload." is how alg none travels; we refuse the shape before anything else.
        assert _reason(ring, token) == "malformed"
    else:
        assert _reason(ring, token) == "unsupported_alg"


def _public_key_encodings(key: SigningKey) -> list[bytes]:
    public = key.jose_key.public_key
    return [
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        json.dumps(key.public_jwk()).encode(),
        json.dumps(key.public_jwk(), separators=(",", ":"), sort_keys=True).encode(),
        key.public_jwk()["x"].encode(),
        base64.urlsafe_b64decode(key.public_jwk()["x"] + "="),
    ]


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_signed_with_our_public_key_is_refused(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims, alg: str
) -> None:
    header = {"alg": alg, "kid": ed_key.kid, "typ": "at+jwt"}
    for secret in _public_key_encodings(ed_key):
        token = forge.hmac_signed(secret, header, claims())
        assert _reason(ring, token) == "unsupported_alg"


@pytest.mark.parametrize(
    "alg", ["RS256", "PS256", "ES384", "Ed25519", "EdDsa", "", None, 1, ["EdDSA"]]
)
def test_other_algorithms_are_refused(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims, alg: Any
) -> None:
    header = {"alg": alg, "kid": ed_key.kid, "typ": "at+jwt"}
    assert _reason(ring, forge.signed(ed_key, header, claims())) == "unsupported_alg"


def test_missing_alg_is_refused(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims
) -> None:
    header = {"kid": ed_key.kid, "typ": "at+jwt"}
    assert _reason(ring, forge.signed(ed_key, header, claims())) == "unsupported_alg"


def test_alg_must_match_the_key_named_by_kid(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims
) -> None:
    header = {"alg": "ES256", "kid": ed_key.kid, "typ": "at+jwt"}
    assert _reason(ring, forge.signed(ed_key, header, claims())) == "alg_mismatch"


# --- kid attacks ---------------------------------------------------------------------------


def test_unknown_kid_is_refused(
    ring: SigningKeyRing, attacker_key: SigningKey, forge: Any, claims: Claims
) -> None:
    header = {"alg": "EdDSA", "kid": attacker_key.kid, "typ": "at+jwt"}
    assert _reason(ring, forge.signed(attacker_key, header, claims())) == "unknown_kid"


def test_missing_kid_is_refused(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims
) -> None:
    header = {"alg": "EdDSA", "typ": "at+jwt"}
    assert _reason(ring, forge.signed(ed_key, header, claims())) == "missing_kid"


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../dev/null",
        "/etc/passwd",
        "keys/../secret",
        "x' UNION SELECT private_key FROM signing_keys --",
        "1; DROP TABLE signing_keys",
        "a" * 65,
        "a" * 10_000,
        "kid\nwith-newline",
        "kid with space",
        "",
        0,
        None,
        ["kid"],
        {"kid": "x"},
    ],
)
def test_kid_that_is_not_a_plain_lookup_key_is_refused(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims, kid: Any
) -> None:
    header = {"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}
    token = forge.signed(ed_key, header, claims())
    expected = "too_large" if len(token) > MAX_TOKEN_LENGTH else "invalid_kid"
    assert _reason(ring, token) == expected


def test_kid_with_valid_key_prefix_is_not_matched_loosely(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims
) -> None:
    for kid in (ed_key.kid + "/../x", ed_key.kid[:-1], ed_key.kid.lower(), " " + ed_key.kid):
        header = {"alg": "EdDSA", "kid": kid, "typ": "at+jwt"}
        assert _reason(ring, forge.signed(ed_key, header, claims())) in {
            "invalid_kid",
            "unknown_kid",
        }


# --- key-supplying headers -----------------------------------------------------------------


def test_key_url_and_embedded_key_headers_are_refused_without_any_fetch(
    ring: SigningKeyRing,
    ed_key: SigningKey,
    attacker_key: SigningKey,
    forge: Any,
    claims: Claims,
    key_server: Any,
    outbound_connections: list[Any],
) -> None:
    jwks_url = f"{key_server.url}/jwks.json"
    attacks: list[tuple[SigningKey, dict[str, Any]]] = [
        # Attacker's key, and a header telling us where to find (or simply what) it is.
        (attacker_key, {"jku": jwks_url, "kid": attacker_key.kid}),
        (attacker_key, {"x5u": f"{key_server.url}/cert.pem", "kid": attacker_key.kid}),
        (attacker_key, {"jwk": attacker_key.public_jwk(), "kid": attacker_key.kid}),
        (attacker_key, {"jwk": attacker_key.public_jwk()}),
        (attacker_key, {"x5c": ["MIIB"], "kid": attacker_key.kid}),
        # Even with our kid and our signature, a token naming a key URL was not minted by us.
        (ed_key, {"jku": jwks_url, "kid": ed_key.kid}),
        (ed_key, {"jwk": ed_key.public_jwk(), "kid": ed_key.kid}),
    ]
    for signer, extra in attacks:
        header = {"alg": "EdDSA", "typ": "at+jwt", **extra}
        assert _reason(ring, forge.signed(signer, header, claims())) == "forbidden_header"

    assert key_server.requests == []
    assert outbound_connections == []


@pytest.mark.parametrize("extra", [{"crit": ["exp"]}, {"crit": []}, {"b64": False}, {"b64": True}])
def test_extension_headers_are_refused(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims, extra: dict[str, Any]
) -> None:
    header = {"alg": "EdDSA", "kid": ed_key.kid, "typ": "at+jwt", **extra}
    assert _reason(ring, forge.signed(ed_key, header, claims())) == "forbidden_header"


def test_unknown_harmless_header_is_ignored(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims
) -> None:
    header = {"alg": "EdDSA", "kid": ed_key.kid, "typ": "at+jwt", "x-trace": "abc"}
    assert _verify(ring, forge.signed(ed_key, header, claims())).subject == "agent-1"


# --- typ -----------------------------------------------------------------------------------


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_accepted_typ_spellings(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims, typ: str
) -> None:
    header = {"alg": "EdDSA", "kid": ed_key.kid, "typ": typ}
    assert _verify(ring, forge.signed(ed_key, header, claims())).jti == "jti-1"


@pytest.mark.parametrize(
    "typ", ["JWT", "jwt", "at+jwt ", "client-authentication+jwt", "dpop+jwt", "", None, 1, ...]
)
def test_wrong_typ_is_refused(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims, typ: Any
) -> None:
    header = {"alg": "EdDSA", "kid": ed_key.kid, "typ": typ}
    if typ is ...:
        del header["typ"]
    assert _reason(ring, forge.signed(ed_key, header, claims())) == "invalid_typ"


# --- claims --------------------------------------------------------------------------------


def _signed(ed_key: SigningKey, forge: Any, body: Any) -> str:
    return str(forge.signed(ed_key, {"alg": "EdDSA", "kid": ed_key.kid, "typ": "at+jwt"}, body))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example"}, "invalid_issuer"),
        ({"iss": ISSUER + "/"}, "invalid_issuer"),
        ({"iss": ...}, "invalid_issuer"),
        ({"iss": [ISSUER]}, "invalid_issuer"),
        ({"aud": "https://other-api.example"}, "invalid_audience"),
        ({"aud": "https://control-plane.example/oauth/token"}, "invalid_audience"),
        ({"aud": ["https://other-api.example"]}, "invalid_audience"),
        ({"aud": ...}, "invalid_audience"),
        ({"aud": None}, "invalid_audience"),
        ({"exp": ...}, "missing_claim"),
        ({"exp": "1800000600"}, "malformed"),
        ({"exp": True}, "malformed"),
        ({"exp": 10**400}, "malformed"),
        ({"iat": ...}, "missing_claim"),
        ({"sub": ...}, "missing_claim"),
        ({"sub": ""}, "malformed"),
        ({"client_id": ...}, "missing_claim"),
        ({"client_id": 7}, "malformed"),
        ({"jti": ...}, "missing_claim"),
        ({"scope": ["decisions:create"]}, "malformed"),
    ],
)
def test_claim_violations_are_refused(
    ring: SigningKeyRing,
    ed_key: SigningKey,
    forge: Any,
    claims: Claims,
    overrides: dict[str, Any],
    reason: str,
) -> None:
    assert _reason(ring, _signed(ed_key, forge, claims(**overrides))) == reason


def test_audience_list_containing_ours_is_accepted(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims
) -> None:
    token = _signed(ed_key, forge, claims(aud=["https://other.example", AUDIENCE]))
    assert _verify(ring, token).subject == "agent-1"


def test_expiry_honours_leeway_exactly(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims
) -> None:
    token = _signed(ed_key, forge, claims(iat=NOW - 700, exp=NOW - 100))

    assert _reason(ring, token, leeway=0) == "expired"
    assert _reason(ring, token, leeway=60) == "expired"
    edge = _signed(ed_key, forge, claims(exp=NOW - 30))
    assert _reason(ring, edge, leeway=30) == "expired"  # now == exp + leeway: expired
    assert _verify(ring, edge, leeway=31).subject == "agent-1"


def test_issued_token_expires(ring: SigningKeyRing) -> None:
    token, _ = _issue(ring)
    assert _verify(ring, token, now=NOW + 599, leeway=0)
    assert _reason(ring, token, now=NOW + 600, leeway=0) == "expired"
    assert _reason(ring, token, now=NOW + 660, leeway=60) == "expired"


@pytest.mark.parametrize("leeway", [61, 3600, -1])
def test_leeway_is_bounded(ring: SigningKeyRing, leeway: int) -> None:
    token, _ = _issue(ring)
    with pytest.raises(ValueError, match="leeway"):
        _verify(ring, token, leeway=leeway)


def test_nbf_in_the_future_is_refused(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims
) -> None:
    assert _reason(ring, _signed(ed_key, forge, claims(nbf=NOW + 61)), leeway=60) == "not_yet_valid"
    assert _verify(ring, _signed(ed_key, forge, claims(nbf=NOW + 60)), leeway=60)


def test_iat_in_the_future_is_refused(
    ring: SigningKeyRing, ed_key: SigningKey, forge: Any, claims: Claims
) -> None:
    token = _signed(ed_key, forge, claims(iat=NOW + 3600, exp=NOW + 4200))
    assert _reason(ring, token) == "issued_in_future"


# --- tampering and malformed input ---------------------------------------------------------


def test_tampered_payload_is_refused(ring: SigningKeyRing) -> None:
    token, claims = _issue(ring)
    header, _, signature = token.split(".")
    for change in ({"sub": "agent-2"}, {"scope": "decisions:create admin"}, {"exp": NOW + 10**6}):
        payload = base64.urlsafe_b64encode(json.dumps({**claims, **change}).encode()).rstrip(b"=")
        assert _reason(ring, f"{header}.{payload.decode()}.{signature}") == "bad_signature"


def test_tampered_signature_is_refused(ring: SigningKeyRing) -> None:
    token, _ = _issue(ring)
    head, sig = token.rsplit(".", 1)
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    assert _reason(ring, f"{head}.{flipped}") == "bad_signature"
    assert _reason(ring, f"{head}.{sig[:-4]}") in {"bad_signature", "malformed"}


def test_non_canonical_base64_is_refused(ring: SigningKeyRing) -> None:
    token, _ = _issue(ring)
    head, sig = token.rsplit(".", 1)
    # 64-byte signature -> 86 chars; the last char carries 4 unused bits. Setting one yields a
    # different string that decodes to the same bytes: a second spelling of the same token.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    twin = sig[:-1] + alphabet[last | 1]
    assert twin != sig
    assert _reason(ring, f"{head}.{twin}") == "malformed"


def test_signature_from_a_different_payload_is_refused(ring: SigningKeyRing) -> None:
    first, _ = _issue(ring)
    second, _ = _issue(ring, subject="agent-2")
    spliced = ".".join(second.split(".")[:2] + first.split(".")[2:])
    assert _reason(ring, spliced) == "bad_signature"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a",
        "a.b",
        "a.b.c.d",
        "a.b.c.d.e",  # JWE compact
        "..",
        "eyJhbGciOiJFZERTQSJ9..sig",
        "!!!.???.###",
        "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6IiJ9.eyJ9.c2ln",  # kid "" -> refused
        "W10.e30.c2ln",  # header is a JSON array
        "bnVsbA.e30.c2ln",  # header is null
        "eyJhbGciOiJFZERTQSIsImFsZyI6Im5vbmUifQ.e30.c2ln",  # duplicate "alg"
        "77u_eyJhbGciOiJFZERTQSJ9.e30.c2ln",  # BOM before the JSON
        b"\xff\xfe.\x00.\x01",
        "ä.ö.ü",
        12345,
        None,
        ["a", "b", "c"],
    ],
)
def test_malformed_tokens_are_refused(ring: SigningKeyRing, token: Any) -> None:
    assert _reason(ring, token) in {"malformed", "unsupported_alg", "invalid_kid"}


def test_oversized_token_is_refused(ring: SigningKeyRing) -> None:
    token, _ = _issue(ring)
    assert _reason(ring, token + "A" * MAX_TOKEN_LENGTH) == "too_large"
    assert _reason(ring, (token + "A" * MAX_TOKEN_LENGTH).encode()) == "too_large"


def test_issuing_refuses_a_token_we_could_not_verify(ring: SigningKeyRing) -> None:
    with pytest.raises(ValueError, match="MAX_TOKEN_LENGTH"):
        _issue(ring, extra_claims={"blob": "x" * MAX_TOKEN_LENGTH})


def test_bytes_token_is_accepted(ring: SigningKeyRing) -> None:
    token, _ = _issue(ring)
    assert _verify(ring, token.encode()).subject == "agent-1"


def test_error_message_never_contains_the_token(ring: SigningKeyRing) -> None:
    token, claims = _issue(ring)
    with pytest.raises(TokenError) as caught:
        _verify(ring, token, audience="https://other.example")
    text = f"{caught.value!s} {caught.value!r} {caught.value.args}"
    assert token not in text
    assert claims["jti"] not in text
    assert "agent-1" not in text

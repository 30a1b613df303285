"""Validation of the public JWK an agent registers for private_key_jwt."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from control_plane.crypto.jwk import InvalidClientJWK, parse_client_public_jwk
from control_plane.crypto.signing import SigningKey, generate_signing_key

_ED_P = 2**255 - 19


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _refused(value: Any, match: str) -> None:
    with pytest.raises(InvalidClientJWK, match=match):
        parse_client_public_jwk(value)


def test_ed25519_key_is_accepted_in_canonical_form(ed_key: SigningKey) -> None:
    given = {**ed_key.public_jwk(), "kid": "agent-7 key #1", "x5u": "https://evil.example/c"}

    jwk = parse_client_public_jwk(given)

    assert jwk.alg == "EdDSA"
    assert jwk.kid == "agent-7 key #1"
    assert jwk.thumbprint == ed_key.kid
    assert jwk.as_dict() == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": ed_key.public_jwk()["x"],
        "kid": "agent-7 key #1",
        "alg": "EdDSA",
        "use": "sig",
    }
    # Round trip through storage.
    assert parse_client_public_jwk(jwk.to_json()) == jwk


def test_p256_key_is_accepted_and_kid_defaults_to_thumbprint(es_key: SigningKey) -> None:
    given = {k: v for k, v in es_key.public_jwk().items() if k in ("kty", "crv", "x", "y")}
    jwk = parse_client_public_jwk(given)
    assert (jwk.alg, jwk.kid, jwk.thumbprint) == ("ES256", es_key.kid, es_key.kid)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_private_parts_are_refused(alg: Any) -> None:
    key = generate_signing_key(alg)
    private = key.jose_key.as_dict(private=True)
    _refused(private, r"private key material \(d\)")
    _refused(json.dumps(private), r"private key material \(d\)")


def test_symmetric_key_is_refused() -> None:
    _refused({"kty": "oct", "k": b64(b"s" * 32)}, "private key material")
    _refused({"kty": "oct"}, "symmetric")


def test_rsa_keys_are_refused_whatever_their_size() -> None:
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pub = numbers.public_numbers()
    jwk = {
        "kty": "RSA",
        "n": b64(pub.n.to_bytes(256, "big")),
        "e": b64(pub.e.to_bytes(3, "big")),
    }
    _refused(jwk, "RSA keys are not accepted")


@pytest.mark.parametrize(
    ("jwk", "match"),
    [
        ({"kty": "OKP", "crv": "X25519", "x": b64(bytes(32))}, "crv 'Ed25519'"),
        ({"kty": "OKP", "crv": "Ed448", "x": b64(bytes(57))}, "crv 'Ed25519'"),
        ({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}, "crv 'P-256'"),
        ({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}, "crv 'P-256'"),
        ({"kty": "OKP", "crv": "Ed25519"}, "'x' is required"),
        ({"kty": "OKP", "crv": "Ed25519", "x": 5}, "'x' is required"),
        ({"kty": "OKP", "crv": "Ed25519", "x": "not base64!"}, "not valid base64url"),
        ({"kty": "OKP", "crv": "Ed25519", "x": b64(bytes(31))}, "exactly 32 bytes"),
        ({"kty": "OKP", "crv": "Ed25519", "x": b64(bytes(32)) + "="}, "not valid base64url"),
        ({"kty": "EC", "crv": "P-256", "x": b64(bytes(32))}, "'y' is required"),
        (
            {"kty": "EC", "crv": "P-256", "x": b64(b"\x01" * 32), "y": b64(b"\x02" * 32)},
            "not a point",
        ),
        ({"kty": "XYZ"}, "'kty' must be"),
        ({}, "'kty' must be"),
        ({"keys": []}, "not a JWK Set"),
        ([], "JSON object"),
        ("[]", "JSON object"),
        ("{not json", "not valid JSON"),
        ('{"kty":"OKP","kty":"EC"}', "not valid JSON"),
        ("x" * 5000, "too large"),
        (None, "JSON object"),
    ],
)
def test_malformed_or_unsupported_jwks_are_refused(jwk: Any, match: str) -> None:
    _refused(jwk, match)


@pytest.mark.parametrize(
    ("member", "value", "match"),
    [
        ("alg", "ES256", "'alg' must be 'EdDSA'"),
        ("alg", "Ed25519", "'alg' must be 'EdDSA'"),
        ("alg", "HS256", "'alg' must be 'EdDSA'"),
        ("use", "enc", "'use' must be 'sig'"),
        ("key_ops", ["encrypt"], "'key_ops'"),
        ("key_ops", "verify", "'key_ops'"),
        ("kid", "", "'kid'"),
        ("kid", "k" * 129, "'kid'"),
        ("kid", "line\nbreak", "'kid'"),
        ("kid", 17, "'kid'"),
    ],
)
def test_inconsistent_members_are_refused(
    ed_key: SigningKey, member: str, value: Any, match: str
) -> None:
    _refused({**ed_key.public_jwk(), member: value}, match)


# The points of small order on Ed25519 (RFC 8032 encodings, as in libsodium's blocklist).
_SMALL_ORDER = [
    bytes(32),  # order 4
    bytes([1]) + bytes(31),  # identity, order 1
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),  # order 8
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),  # order 8
    (_ED_P - 1).to_bytes(32, "little"),  # order 2
]


@pytest.mark.parametrize("point", _SMALL_ORDER)
@pytest.mark.parametrize("sign_bit", [0, 1])
def test_small_order_ed25519_keys_are_refused(point: bytes, sign_bit: int) -> None:
    raw = bytearray(point)
    raw[31] |= sign_bit << 7
    _refused({"kty": "OKP", "crv": "Ed25519", "x": b64(bytes(raw))}, "small order|canonical")


def test_small_order_key_really_is_dangerous() -> None:
    # Why the check exists: with the identity as public key, a signature of (identity, 0)
    # verifies for any message under the cryptography backend.
    identity = bytes([1]) + bytes(31)
    public = ed25519.Ed25519PublicKey.from_public_bytes(identity)
    public.verify(identity + bytes(32), b"any message at all")  # does not raise


def test_non_canonical_and_off_curve_ed25519_points_are_refused() -> None:
    # y >= p is a non-canonical encoding of y - p.
    _refused(
        {"kty": "OKP", "crv": "Ed25519", "x": b64((_ED_P + 3).to_bytes(32, "little"))}, "canonical"
    )
    # y = 2 has no x on the curve.
    _refused({"kty": "OKP", "crv": "Ed25519", "x": b64((2).to_bytes(32, "little"))}, "not a point")


def test_real_keys_of_both_kinds_pass_many_times() -> None:
    for _ in range(200):
        ed = ed25519.Ed25519PrivateKey.generate().public_key()
        raw = ed.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert (
            parse_client_public_jwk({"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}).alg == "EdDSA"
        )
    nums = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": b64(nums.x.to_bytes(32, "big")),
        "y": b64(nums.y.to_bytes(32, "big")),
    }
    assert parse_client_public_jwk(jwk).alg == "ES256"


def test_error_messages_carry_no_key_material() -> None:
    key = generate_signing_key("EdDSA")
    private = key.jose_key.as_dict(private=True)
    with pytest.raises(InvalidClientJWK) as caught:
        parse_client_public_jwk(private)
    assert str(private["d"]) not in str(caught.value)
    assert str(private["x"]) not in str(caught.value)

"""Signing keys: generation, encryption at rest, the key ring, rotation and the JWKS."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc.jwk import thumbprint

from control_plane.crypto.encryption import (
    KeyEncryptionError,
    decrypt_private_key,
    encrypt_private_key,
    generate_kek,
    kek_id,
)
from control_plane.crypto.jwk import is_safe_kid
from control_plane.crypto.signing import (
    KeyRecord,
    KeyRingError,
    SigningKey,
    SigningKeyRing,
    generate_signing_key,
    public_key_not_after,
)
from control_plane.oauth2.tokens import TokenError, issue_access_token, verify_access_token
from tests.fixtures.jose import AUDIENCE, ISSUER, NOW

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def _private_scalar_b64(key: SigningKey) -> str:
    return str(key.jose_key.as_dict(private=True)["d"])


# --- generation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "kty", "crv"), [("EdDSA", "OKP", "Ed25519"), ("ES256", "EC", "P-256")]
)
def test_generated_key_has_thumbprint_kid_and_public_jwk(alg: Any, kty: str, crv: str) -> None:
    key = generate_signing_key(alg)
    jwk = key.public_jwk()

    assert jwk["kty"] == kty
    assert jwk["crv"] == crv
    assert jwk["alg"] == alg
    assert jwk["use"] == "sig"
    assert is_safe_kid(key.kid)
    # RFC 7638: the kid is the thumbprint of the required public members.
    required = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}[kty]
    assert key.kid == thumbprint({m: jwk[m] for m in required})
    assert not PRIVATE_MEMBERS & jwk.keys()


def test_two_generated_keys_differ() -> None:
    assert generate_signing_key().kid != generate_signing_key().kid


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        generate_signing_key("HS256")  # type: ignore[arg-type]


def test_repr_never_shows_key_material(ed_key: SigningKey) -> None:
    assert _private_scalar_b64(ed_key) not in repr(ed_key)
    assert repr(ed_key) == f"SigningKey(kid={ed_key.kid!r}, alg='EdDSA')"


# --- encryption at rest --------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_encrypt_decrypt_round_trip(alg: Any) -> None:
    key = generate_signing_key(alg)
    kek = generate_kek()

    blob = encrypt_private_key(key, kek)
    restored = decrypt_private_key(blob, kid=key.kid, alg=key.alg, kek=kek)

    assert restored.kid == key.kid
    assert restored.public_jwk() == key.public_jwk()
    assert _private_scalar_b64(restored) == _private_scalar_b64(key)
    # The ciphertext hides the key and is versioned, with the KEK id in clear.
    assert _private_scalar_b64(key) not in blob
    assert blob.split(".")[:2] == ["v1", kek_id(kek)]


def test_each_encryption_is_fresh(ed_key: SigningKey) -> None:
    kek = generate_kek()
    assert encrypt_private_key(ed_key, kek) != encrypt_private_key(ed_key, kek)


def test_wrong_kek_is_a_typed_error(ed_key: SigningKey) -> None:
    right, wrong = generate_kek(), generate_kek()
    blob = encrypt_private_key(ed_key, right)

    with pytest.raises(KeyEncryptionError) as caught:
        decrypt_private_key(blob, kid=ed_key.kid, alg="EdDSA", kek=wrong)

    assert caught.value.reason == "unknown_kek"
    assert right not in str(caught.value)
    assert wrong not in str(caught.value)


def test_wrong_kek_with_forged_kek_id_fails_authentication(ed_key: SigningKey) -> None:
    right, wrong = generate_kek(), generate_kek()
    parts = encrypt_private_key(ed_key, right).split(".")
    parts[1] = kek_id(wrong)  # pretend the blob was made under `wrong`

    with pytest.raises(KeyEncryptionError) as caught:
        decrypt_private_key(".".join(parts), kid=ed_key.kid, alg="EdDSA", kek=wrong)
    assert caught.value.reason == "decryption_failed"


def test_old_kek_still_decrypts_during_kek_rotation(ed_key: SigningKey) -> None:
    old, new = generate_kek(), generate_kek()
    blob = encrypt_private_key(ed_key, old)

    restored = decrypt_private_key(blob, kid=ed_key.kid, alg="EdDSA", kek=[new, old])
    assert restored.public_jwk() == ed_key.public_jwk()


def test_ciphertext_is_bound_to_its_kid_and_alg(ed_key: SigningKey) -> None:
    kek = generate_kek()
    blob = encrypt_private_key(ed_key, kek)
    other = generate_signing_key()

    with pytest.raises(KeyEncryptionError) as caught:
        decrypt_private_key(blob, kid=other.kid, alg="EdDSA", kek=kek)
    assert caught.value.reason == "decryption_failed"
    with pytest.raises(KeyEncryptionError) as caught:
        decrypt_private_key(blob, kid=ed_key.kid, alg="ES256", kek=kek)
    assert caught.value.reason == "decryption_failed"


def test_tampered_ciphertext_fails(ed_key: SigningKey) -> None:
    kek = generate_kek()
    blob = encrypt_private_key(ed_key, kek)
    last = blob[-2]
    tampered = blob[:-2] + ("A" if last != "A" else "B") + blob[-1]

    with pytest.raises(KeyEncryptionError) as caught:
        decrypt_private_key(tampered, kid=ed_key.kid, alg="EdDSA", kek=kek)
    assert caught.value.reason == "decryption_failed"


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        ("", "malformed"),
        ("v1.abc", "malformed"),
        ("v2.0011223344556677.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAA.AAAA", "unsupported_version"),
        ("v1.0011223344556677.!!!.AAAAAAAAAAAAAAAA.AAAA", "malformed"),
        ("v1.0011223344556677.AAAA.AAAAAAAAAAAAAAAA.AAAA", "malformed"),  # salt too short
        ("v1.0011223344556677.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAA.AAAA", "unknown_kek"),
    ],
)
def test_malformed_ciphertexts_are_typed_errors(ed_key: SigningKey, blob: str, reason: str) -> None:
    with pytest.raises(KeyEncryptionError) as caught:
        decrypt_private_key(blob, kid=ed_key.kid, alg="EdDSA", kek=generate_kek())
    assert caught.value.reason == reason


def test_short_kek_is_refused(ed_key: SigningKey) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        encrypt_private_key(ed_key, "change-me")


# --- key ring ------------------------------------------------------------------------------


def test_newest_started_key_signs(
    ed_key: SigningKey, es_key: SigningKey, make_record: Callable[..., KeyRecord]
) -> None:
    ring = SigningKeyRing([make_record(es_key, NOW - 7200), make_record(ed_key, NOW - 60)])
    assert ring.signing_key(NOW).kid == ed_key.kid
    # Before the newer key starts, the older one signs.
    assert ring.signing_key(NOW - 120).kid == es_key.kid


def test_pre_published_key_is_in_jwks_but_does_not_sign_yet(
    ed_key: SigningKey, es_key: SigningKey, make_record: Callable[..., KeyRecord]
) -> None:
    ring = SigningKeyRing([make_record(es_key, NOW - 7200), make_record(ed_key, NOW + 300)])

    assert ring.signing_key(NOW).kid == es_key.kid
    assert {k["kid"] for k in ring.jwks(NOW)["keys"]} == {es_key.kid, ed_key.kid}


def test_no_signing_key_is_a_typed_error(
    ed_key: SigningKey, make_record: Callable[..., KeyRecord]
) -> None:
    verify_only = KeyRecord(
        kid=ed_key.kid,
        alg="EdDSA",
        public_jwk=ed_key.public_jwk(),
        created_at=datetime.fromtimestamp(NOW - 60, UTC),
    )
    with pytest.raises(KeyRingError) as caught:
        SigningKeyRing([verify_only]).signing_key(NOW)
    assert caught.value.reason == "no_signing_key"


def test_naive_datetimes_are_utc(ed_key: SigningKey) -> None:
    naive = datetime.fromtimestamp(NOW - 10, UTC).replace(tzinfo=None)
    ring = SigningKeyRing(
        [KeyRecord(ed_key.kid, "EdDSA", ed_key.public_jwk(), naive, private_key=ed_key)]
    )
    assert ring.signing_key(NOW).kid == ed_key.kid
    with pytest.raises(KeyRingError):
        ring.signing_key(NOW - 20)


def test_jwks_never_contains_private_parts(
    ed_key: SigningKey, es_key: SigningKey, make_record: Callable[..., KeyRecord]
) -> None:
    ring = SigningKeyRing([make_record(ed_key, NOW - 60), make_record(es_key, NOW - 7200)])
    document = ring.jwks(NOW)
    text = json.dumps(document)

    assert len(document["keys"]) == 2
    for jwk in document["keys"]:
        assert set(jwk) <= {"kty", "crv", "x", "y", "kid", "alg", "use"}
        assert not PRIVATE_MEMBERS & jwk.keys()
    for key in (ed_key, es_key):
        assert _private_scalar_b64(key) not in text


def test_private_key_must_match_its_public_record(
    ed_key: SigningKey, attacker_key: SigningKey
) -> None:
    mixed = KeyRecord(
        kid=ed_key.kid,
        alg="EdDSA",
        public_jwk=ed_key.public_jwk(),
        created_at=datetime.fromtimestamp(NOW, UTC),
        private_key=SigningKey(kid=ed_key.kid, alg="EdDSA", jose_key=attacker_key.jose_key),
    )
    with pytest.raises(KeyRingError) as caught:
        SigningKeyRing([mixed])
    assert caught.value.reason == "key_mismatch"


def test_duplicate_kid_is_refused(
    ed_key: SigningKey, make_record: Callable[..., KeyRecord]
) -> None:
    with pytest.raises(KeyRingError) as caught:
        SigningKeyRing([make_record(ed_key, NOW), make_record(ed_key, NOW - 1)])
    assert caught.value.reason == "duplicate_kid"


@pytest.mark.parametrize("kid", ["../../etc/passwd", "x' OR '1'='1", "a" * 65, ""])
def test_unsafe_kid_in_a_record_is_refused(ed_key: SigningKey, kid: str) -> None:
    jwk = {**ed_key.public_jwk(), "kid": kid}
    with pytest.raises(KeyRingError) as caught:
        SigningKeyRing([KeyRecord(kid, "EdDSA", jwk, datetime.fromtimestamp(NOW, UTC))])
    assert caught.value.reason == "invalid_record"


def test_ring_from_published_jwks_verifies(ring: SigningKeyRing) -> None:
    token, _ = issue_access_token(
        ring,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="agent-1",
        client_id="c",
        scope=[],
        lifetime_seconds=60,
        now=NOW,
    )
    verifier = SigningKeyRing.from_jwks(json.dumps(ring.jwks(NOW)))

    assert verify_access_token(verifier, token, issuer=ISSUER, audience=AUDIENCE, now=NOW)
    with pytest.raises(KeyRingError):
        verifier.signing_key(NOW)


def test_public_key_not_after_covers_lifetime_leeway_and_propagation() -> None:
    retired = datetime(2027, 1, 1, tzinfo=UTC)
    assert public_key_not_after(
        retired, max_token_lifetime_seconds=600, leeway_seconds=60, propagation_seconds=5
    ) == retired + timedelta(seconds=665)


# --- rotation ------------------------------------------------------------------------------


def test_rotation_keeps_old_tokens_valid_until_they_expire(
    ed_key: SigningKey, make_record: Callable[..., KeyRecord]
) -> None:
    lifetime, leeway = 600, 30
    old_key = ed_key
    before = SigningKeyRing([make_record(old_key, NOW - 3600)])
    old_token, _ = issue_access_token(
        before,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="agent-1",
        client_id="c",
        scope=["audit:write"],
        lifetime_seconds=lifetime,
        now=NOW,
    )

    # `agentctl keys rotate` at NOW + 60: a new key, the old one retired and scheduled out.
    rotated_at = NOW + 60
    new_key = generate_signing_key()
    not_after = public_key_not_after(
        datetime.fromtimestamp(rotated_at, UTC),
        max_token_lifetime_seconds=lifetime,
        leeway_seconds=leeway,
    )
    after = SigningKeyRing(
        [
            make_record(
                old_key,
                NOW - 3600,
                retired_at=datetime.fromtimestamp(rotated_at, UTC),
                not_after=not_after,
            ),
            make_record(new_key, rotated_at),
        ]
    )

    # New tokens carry the new kid ...
    new_token, _ = issue_access_token(
        after,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="agent-1",
        client_id="c",
        scope=[],
        lifetime_seconds=lifetime,
        now=rotated_at + 1,
    )
    assert json.loads(_b64decode(new_token.split(".")[0]))["kid"] == new_key.kid
    # ... both keys are published, and the old token still verifies until it expires.
    assert [k["kid"] for k in after.jwks(rotated_at + 1)["keys"]] == [new_key.kid, old_key.kid]
    for moment in (rotated_at + 1, NOW + lifetime + leeway - 1):
        verified = verify_access_token(
            after, old_token, issuer=ISSUER, audience=AUDIENCE, leeway=leeway, now=moment
        )
        assert verified.kid == old_key.kid
    with pytest.raises(TokenError) as caught:
        verify_access_token(
            after, old_token, issuer=ISSUER, audience=AUDIENCE, leeway=leeway, now=NOW + 630
        )
    assert caught.value.reason == "expired"

    # Once every token it signed has expired, the old key leaves the JWKS and stops verifying.
    gone = not_after.timestamp()
    assert [k["kid"] for k in after.jwks(gone)["keys"]] == [new_key.kid]
    assert after.verification_key(old_key.kid, gone) is None
    assert after.verification_key(old_key.kid, gone - 1) is not None


def _b64decode(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))

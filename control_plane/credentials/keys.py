"""Signing keys of the control plane, and public keys that agents register.

The control plane signs access tokens with keys it generates itself (Ed25519 for `EdDSA` by
default, optionally P-256 for `ES256`). This module covers their whole life without touching the
database:

- `generate_signing_key` creates a key whose `kid` is its RFC 7638 thumbprint, so a `kid` is
  always a short URL-safe token and can be checked against the key it names.
- `encrypt_private_key` / `decrypt_private_key` turn the private part into a storable string,
  encrypted under a key-encryption key (KEK) taken from settings (format below).
- `SigningKeyRing` is built from the rows the service layer loads (`KeyRecord`). It picks the key
  that signs now and answers `kid` lookups for verification, keeping retired public keys until
  `not_after`, that is until every token they signed has expired (`public_key_not_after`).
  `jwks()` is the document served at `/.well-known/jwks.json`.
- `parse_client_public_jwk` validates a JWK that an agent registers for `private_key_jwt`.

JOSE comes from joserfc, the JOSE library of the Authlib project (Authlib >= 1.7 depends on it
and deprecates `authlib.jose` in its favour). `JWS_REGISTRY` knows exactly two algorithms,
`EdDSA` and `ES256`; `none`, the HMAC family and RSA are not registered at all, so no code path in
this package can select them, whatever a token header says.

Ciphertext format of an encrypted private key (all parts base64url without padding)::

    v1.<kek id>.<salt>.<nonce>.<AES-256-GCM ciphertext and tag>

The AES key is HKDF-SHA256(KEK, salt, info) with a fresh 16-byte salt per key, so no two keys
share an AES key and nonce reuse is not a concern. The associated data binds the version, `alg`
and `kid`: a ciphertext copied onto another row does not decrypt. The KEK id (HKDF output under a
different label, 8 bytes in hex) tells "encrypted under another KEK" apart from "corrupted", and
lets `decrypt_private_key` accept the old KEK alongside the new one during KEK rotation.
"""

from __future__ import annotations

import binascii
import json
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeAlias, cast

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.jwk import ECKey, OKPKey

from ._jose import (
    ALLOWED_ALGORITHMS,
    JWS_REGISTRY,
    JoseKey,
    b64decode,
    b64encode,
    check_key_for,
    loads_json,
)

__all__ = [
    "ALLOWED_ALGORITHMS",
    "JWS_REGISTRY",
    "InvalidClientJWK",
    "KeyEncryptionError",
    "KeyEncryptionErrorReason",
    "KeyRecord",
    "KeyRingError",
    "KeyRingErrorReason",
    "PublicJWK",
    "SigningAlg",
    "SigningKey",
    "SigningKeyRing",
    "VerificationKey",
    "decrypt_private_key",
    "encrypt_private_key",
    "generate_kek",
    "generate_signing_key",
    "is_safe_kid",
    "kek_id",
    "parse_client_public_jwk",
    "public_key_not_after",
]

SigningAlg: TypeAlias = Literal["EdDSA", "ES256"]

# A kid is only ever a dictionary key (RFC 8725 section 3.10): short, URL-safe, no separators, so
# it can reach logs, metrics and SQL parameters without escaping. Thumbprints are 43 characters.
_KID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_safe_kid(value: object) -> bool:
    """True when `value` is a string usable as a key id: 1-64 characters of [A-Za-z0-9_-]."""
    return isinstance(value, str) and _KID_RE.fullmatch(value) is not None


def _epoch(moment: datetime) -> float:
    # SQLite hands back naive datetimes; everything stored here is UTC (see REFERENCES.md).
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _now(now: float | None) -> float:
    return time.time() if now is None else float(now)


# --------------------------------------------------------------------------------------------
# Signing keys


@dataclass(frozen=True, slots=True, repr=False)
class SigningKey:
    """A private signing key with its `kid` and algorithm. Its repr never shows key material."""

    kid: str
    alg: SigningAlg
    jose_key: JoseKey

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r})"

    def public_jwk(self) -> dict[str, str]:
        """The public JWK (with `kid`, `alg` and `use`), as published in the JWKS."""
        return _public_jwk_dict(self.jose_key, self.kid, self.alg)

    def _private_pkcs8(self) -> bytes:
        private = self.jose_key.private_key
        if private is None:  # pragma: no cover - SigningKey is only built from private keys
            raise ValueError("not a private key")
        return private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _public_jwk_dict(key: JoseKey, kid: str, alg: str) -> dict[str, str]:
    # Allow-list of public members: a deny-list would leak whatever private member a future
    # key type adds.
    data = key.as_dict(private=False)
    out: dict[str, str] = {n: str(data[n]) for n in ("kty", "crv", "x", "y") if n in data}
    out.update(kid=kid, alg=alg, use="sig")
    return out


def _wrap_private(native: Any, alg: SigningAlg, kid: str | None = None) -> SigningKey:
    jose_key: JoseKey = OKPKey.import_key(native) if alg == "EdDSA" else ECKey.import_key(native)
    kid = kid if kid is not None else jose_key.thumbprint()
    check_key_for(alg, jose_key)
    return SigningKey(kid=kid, alg=alg, jose_key=jose_key)


def generate_signing_key(alg: SigningAlg = "EdDSA") -> SigningKey:
    """Create a new signing key; its `kid` is the RFC 7638 thumbprint of its public key."""
    if alg == "EdDSA":
        return _wrap_private(ed25519.Ed25519PrivateKey.generate(), alg)
    if alg == "ES256":
        return _wrap_private(ec.generate_private_key(ec.SECP256R1()), alg)
    raise ValueError(
        f"unsupported signing algorithm {alg!r}; use one of {sorted(ALLOWED_ALGORITHMS)}"
    )


# --------------------------------------------------------------------------------------------
# Encryption of private keys at rest

KeyEncryptionErrorReason: TypeAlias = Literal[
    "malformed", "unsupported_version", "unknown_kek", "decryption_failed", "invalid_key"
]

_CIPHERTEXT_VERSION: Final = "v1"
_HKDF_INFO: Final = b"agent-control-plane/signing-key-encryption/v1"
_KEK_ID_INFO: Final = b"agent-control-plane/kek-id/v1"
_MIN_KEK_BYTES: Final = 32
_SALT_BYTES: Final = 16
_NONCE_BYTES: Final = 12


class KeyEncryptionError(Exception):
    """A stored private key could not be decrypted. `reason` is one of
    `KeyEncryptionErrorReason`; the message never contains key material or the KEK."""

    def __init__(self, reason: KeyEncryptionErrorReason) -> None:
        super().__init__(reason)
        self.reason: KeyEncryptionErrorReason = reason

    def __str__(self) -> str:
        return f"cannot decrypt signing key: {self.reason}"


def _kek_bytes(kek: str | bytes) -> bytes:
    data = kek.encode("utf-8") if isinstance(kek, str) else bytes(kek)
    if len(data) < _MIN_KEK_BYTES:
        # HKDF is fast on purpose (keys are decrypted on every key-ring load), so the KEK itself
        # must carry the entropy: refuse anything shorter than a generated one.
        raise ValueError(
            f"key-encryption key must be at least {_MIN_KEK_BYTES} bytes; "
            "create one with generate_kek()"
        )
    return data


def generate_kek() -> str:
    """A fresh key-encryption key for settings: 256 random bits, base64url (43 characters)."""
    return secrets.token_urlsafe(32)


def kek_id(kek: str | bytes) -> str:
    """Public identifier of a KEK (16 hex characters), stored in each ciphertext."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=8, salt=None, info=_KEK_ID_INFO)
    return hkdf.derive(_kek_bytes(kek)).hex()


def _aead_key(kek: bytes, salt: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_HKDF_INFO)
    return AESGCM(hkdf.derive(kek))


def _aad(kid: str, alg: str) -> bytes:
    return b"\x00".join((_CIPHERTEXT_VERSION.encode(), alg.encode(), kid.encode()))


def encrypt_private_key(key: SigningKey, kek: str | bytes) -> str:
    """Encrypt the private part of `key` under `kek` into a storable ASCII string."""
    kek_raw = _kek_bytes(kek)
    salt = os.urandom(_SALT_BYTES)
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _aead_key(kek_raw, salt).encrypt(nonce, key._private_pkcs8(), _aad(key.kid, key.alg))
    return ".".join(
        (_CIPHERTEXT_VERSION, kek_id(kek_raw), b64encode(salt), b64encode(nonce), b64encode(sealed))
    )


def decrypt_private_key(
    blob: str, *, kid: str, alg: str, kek: str | bytes | Sequence[str | bytes]
) -> SigningKey:
    """Decrypt a string made by `encrypt_private_key` for the key `kid` / `alg`.

    `kek` is the current KEK, or a sequence of KEKs (current first, then retired ones) while the
    KEK is being rotated. Raises `KeyEncryptionError`; `unknown_kek` means the blob was encrypted
    under a KEK that was not given, `decryption_failed` that it was altered or belongs to another
    key.
    """
    if not is_safe_kid(kid):
        raise ValueError("kid is not a safe key id")
    if alg not in ALLOWED_ALGORITHMS:
        raise ValueError("unsupported signing algorithm")
    keks = [kek] if isinstance(kek, str | bytes) else list(kek)
    if not keks:
        raise ValueError("no key-encryption key given")
    candidates = {kek_id(k): _kek_bytes(k) for k in keks}

    parts = blob.split(".") if isinstance(blob, str) else []
    if len(parts) != 5:
        raise KeyEncryptionError("malformed")
    version, blob_kek_id, salt_text, nonce_text, sealed_text = parts
    if version != _CIPHERTEXT_VERSION:
        raise KeyEncryptionError("unsupported_version")
    try:
        salt, nonce, sealed = (b64decode(p) for p in (salt_text, nonce_text, sealed_text))
    except (ValueError, binascii.Error):
        raise KeyEncryptionError("malformed") from None
    if len(salt) != _SALT_BYTES or len(nonce) != _NONCE_BYTES:
        raise KeyEncryptionError("malformed")
    kek_raw = candidates.get(blob_kek_id)
    if kek_raw is None:
        raise KeyEncryptionError("unknown_kek")
    try:
        der = _aead_key(kek_raw, salt).decrypt(nonce, sealed, _aad(kid, alg))
    except InvalidTag:
        raise KeyEncryptionError("decryption_failed") from None
    try:
        native = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyEncryptionError("invalid_key") from None
    if alg == "EdDSA" and not isinstance(native, ed25519.Ed25519PrivateKey):
        raise KeyEncryptionError("invalid_key")
    if alg == "ES256" and not (
        isinstance(native, ec.EllipticCurvePrivateKey) and isinstance(native.curve, ec.SECP256R1)
    ):
        raise KeyEncryptionError("invalid_key")
    return _wrap_private(native, cast(SigningAlg, alg), kid)


# --------------------------------------------------------------------------------------------
# Public keys: agents' registered JWKs and the control plane's own published keys


class InvalidClientJWK(ValueError):
    """A JWK offered for registration was refused; the message says why (never key material)."""


@dataclass(frozen=True, slots=True)
class PublicJWK:
    """A validated public key: Ed25519 (`EdDSA`) or P-256 (`ES256`), never private material."""

    alg: SigningAlg
    kid: str
    thumbprint: str
    jose_key: JoseKey

    def as_dict(self) -> dict[str, str]:
        """Canonical public JWK (`kty`, `crv`, `x`, `y`, `kid`, `alg`, `use`) for storage."""
        return _public_jwk_dict(self.jose_key, self.kid, self.alg)

    def to_json(self) -> str:
        """`as_dict()` as compact JSON with sorted members; parse back with
        `parse_client_public_jwk`."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))


# Ed25519 field and curve constants (RFC 8032 section 5.1).
_ED_P: Final = 2**255 - 19
_ED_D: Final = (-121665 * pow(121666, -1, _ED_P)) % _ED_P


def _ed25519_point_problem(raw: bytes) -> str | None:
    """Why a 32-byte Ed25519 public key must be refused, or None.

    OpenSSL accepts small-order points as Ed25519 public keys, and for such a key a signature
    made of a small-order R and S = 0 verifies for most messages, with no private key at all
    (the identity point verifies every message). So a registered key of small order would let
    anyone authenticate as that client. We decode the point (RFC 8032 5.1.3), map it to
    Curve25519 and let X25519 do the cofactor multiplication: an all-zero result, which
    cryptography reports as ValueError, means the point has small order.
    """
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    x_is_odd = raw[31] >> 7
    if y >= _ED_P:
        return "is not canonically encoded"
    x2 = (y * y - 1) * pow(_ED_D * y * y + 1, -1, _ED_P) % _ED_P
    if x2 != 0 and pow(x2, (_ED_P - 1) // 2, _ED_P) != 1:
        return "is not a point on Ed25519"
    if x2 == 0 and x_is_odd:
        return "is not canonically encoded"
    if y == 1:
        return "is a point of small order"
    u = (1 + y) * pow((1 - y) % _ED_P, -1, _ED_P) % _ED_P
    try:
        x25519.X25519PrivateKey.generate().exchange(
            x25519.X25519PublicKey.from_public_bytes(u.to_bytes(32, "little"))
        )
    except ValueError:
        return "is a point of small order"
    return None


_PRIVATE_MEMBERS: Final = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_MAX_JWK_JSON: Final = 4096
_MAX_CLIENT_KID: Final = 128


def _coordinate(jwk: Mapping[str, Any], name: str, size: int, crv: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise InvalidClientJWK(f"'{name}' is required and must be a base64url string")
    try:
        raw = b64decode(value)
    except (ValueError, binascii.Error):
        raise InvalidClientJWK(f"'{name}' is not valid base64url") from None
    if len(raw) != size:
        raise InvalidClientJWK(f"'{name}' must encode exactly {size} bytes for {crv}")
    return raw


def parse_client_public_jwk(value: Mapping[str, Any] | str) -> PublicJWK:
    """Validate a public JWK registered for `private_key_jwt` and return it in canonical form.

    Accepted: `kty` `OKP` with `crv` `Ed25519` (alg `EdDSA`) and `kty` `EC` with `crv` `P-256`
    (alg `ES256`). Refused, with a message naming the problem: JWK Sets, any private member
    (`d` ...), symmetric (`oct`) and RSA keys, other curves, malformed or off-curve coordinates,
    small-order Ed25519 points, an `alg`, `use` or `key_ops` that does not fit a verification key.
    The `kid` is kept when given (any printable string up to 128 characters; it is informational,
    the key is looked up by client id), otherwise it is the RFC 7638 thumbprint. Other members
    (`x5c`, `x5u`, ...) are dropped: nothing is ever fetched or chained from them.
    """
    jwk: Any = value
    if isinstance(value, str):
        if len(value) > _MAX_JWK_JSON:
            raise InvalidClientJWK("JWK is too large")
        try:
            jwk = loads_json(value)
        except (ValueError, RecursionError):
            raise InvalidClientJWK("JWK is not valid JSON") from None
    if not isinstance(jwk, Mapping):
        raise InvalidClientJWK("a JWK must be a JSON object")
    if "keys" in jwk:
        raise InvalidClientJWK("expected a single JWK, not a JWK Set")
    found_private = [name for name in _PRIVATE_MEMBERS if name in jwk]
    if found_private:
        raise InvalidClientJWK(
            f"JWK contains private key material ({', '.join(found_private)}); "
            "register the public key only"
        )
    kty = jwk.get("kty")
    crv = jwk.get("crv")
    jose_key: JoseKey
    alg: SigningAlg
    if kty == "OKP":
        if crv != "Ed25519":
            raise InvalidClientJWK("OKP keys must use crv 'Ed25519'")
        x = _coordinate(jwk, "x", 32, "Ed25519")
        problem = _ed25519_point_problem(x)
        if problem is not None:
            raise InvalidClientJWK(f"'x' {problem}")
        alg = "EdDSA"
        jose_key = OKPKey.import_key(ed25519.Ed25519PublicKey.from_public_bytes(x))
    elif kty == "EC":
        if crv != "P-256":
            raise InvalidClientJWK("EC keys must use crv 'P-256'")
        x = _coordinate(jwk, "x", 32, "P-256")
        y = _coordinate(jwk, "y", 32, "P-256")
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        )
        try:
            native = numbers.public_key()
        except ValueError:
            raise InvalidClientJWK("'x' and 'y' are not a point on P-256") from None
        alg = "ES256"
        jose_key = ECKey.import_key(native)
    elif kty == "oct":
        raise InvalidClientJWK(
            "symmetric keys (kty 'oct') are not accepted; register an Ed25519 or P-256 public key"
        )
    elif kty == "RSA":
        raise InvalidClientJWK(
            "RSA keys are not accepted; register an Ed25519 (EdDSA) or P-256 (ES256) public key"
        )
    else:
        raise InvalidClientJWK("'kty' must be 'OKP' (Ed25519) or 'EC' (P-256)")

    declared_alg = jwk.get("alg")
    if declared_alg is not None and declared_alg != alg:
        raise InvalidClientJWK(f"'alg' must be '{alg}' for this key")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise InvalidClientJWK("'use' must be 'sig'")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (
        not isinstance(key_ops, list)
        or not all(isinstance(op, str) for op in key_ops)
        or "verify" not in key_ops
    ):
        raise InvalidClientJWK("'key_ops' must be a list that includes 'verify'")
    thumbprint = jose_key.thumbprint()
    kid = jwk.get("kid", thumbprint)
    if not isinstance(kid, str) or not 0 < len(kid) <= _MAX_CLIENT_KID or not kid.isprintable():
        raise InvalidClientJWK(
            f"'kid' must be a printable string of 1-{_MAX_CLIENT_KID} characters"
        )
    check_key_for(alg, jose_key)
    return PublicJWK(alg=alg, kid=kid, thumbprint=thumbprint, jose_key=jose_key)


# --------------------------------------------------------------------------------------------
# Key ring

KeyRingErrorReason: TypeAlias = Literal[
    "invalid_record", "duplicate_kid", "key_mismatch", "no_signing_key"
]


class KeyRingError(Exception):
    """The key rows are inconsistent, or no key can sign now. Never carries key material."""

    def __init__(self, reason: KeyRingErrorReason, kid: str | None = None) -> None:
        super().__init__(reason)
        self.reason: KeyRingErrorReason = reason
        self.kid = kid

    def __str__(self) -> str:
        return f"signing key ring: {self.reason}" + (f" (kid {self.kid})" if self.kid else "")


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One signing key as the service layer loads it from the database.

    `created_at` is when the key may start signing (set it in the future to publish a key before
    using it); `retired_at` is when it stopped signing; `not_after` is when its public key leaves
    the JWKS and stops verifying (see `public_key_not_after`). `private_key` is the decrypted key,
    or None on processes that only verify.
    """

    kid: str
    alg: str
    public_jwk: Mapping[str, Any] | str
    created_at: datetime
    private_key: SigningKey | None = None
    retired_at: datetime | None = None
    not_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key of the ring, as found by `kid`."""

    kid: str
    alg: SigningAlg
    jose_key: JoseKey
    jwk: Mapping[str, str]
    created_at: float
    not_after: float | None


@dataclass(frozen=True, slots=True)
class _Entry:
    public: VerificationKey
    private: SigningKey | None
    retired_at: float | None


def public_key_not_after(
    retired_at: datetime,
    *,
    max_token_lifetime_seconds: int,
    leeway_seconds: int,
    propagation_seconds: int = 0,
) -> datetime:
    """When a key retired at `retired_at` may leave the JWKS.

    The last token it signed was issued at `retired_at` at the latest, expires
    `max_token_lifetime_seconds` later and is accepted `leeway_seconds` after that.
    `propagation_seconds` covers replicas whose key ring is older than the rotation and still sign
    with the retired key (set it to the key-ring reload interval).
    """
    seconds = max_token_lifetime_seconds + leeway_seconds + propagation_seconds
    if seconds < 0:
        raise ValueError("durations must not be negative")
    return retired_at + timedelta(seconds=seconds)


class SigningKeyRing:
    """Immutable set of signing keys at one load: picks the signing key, finds verification keys.

    Build a new ring whenever the rows change (rotation) and swap it in; readers never see a
    half-updated ring, so no locking is needed. `now` arguments are Unix seconds (default:
    the current time).
    """

    __slots__ = ("_by_kid", "_newest_first")

    def __init__(self, records: Iterable[KeyRecord]) -> None:
        by_kid: dict[str, _Entry] = {}
        for record in records:
            entry = self._entry(record)
            if entry.public.kid in by_kid:
                raise KeyRingError("duplicate_kid", entry.public.kid)
            by_kid[entry.public.kid] = entry
        self._by_kid = by_kid
        self._newest_first = sorted(
            by_kid.values(), key=lambda e: e.public.created_at, reverse=True
        )

    @staticmethod
    def _entry(record: KeyRecord) -> _Entry:
        if not is_safe_kid(record.kid) or record.alg not in ALLOWED_ALGORITHMS:
            raise KeyRingError("invalid_record", record.kid if is_safe_kid(record.kid) else None)
        try:
            public = parse_client_public_jwk(record.public_jwk)
        except InvalidClientJWK:
            raise KeyRingError("invalid_record", record.kid) from None
        if public.alg != record.alg or public.kid != record.kid:
            raise KeyRingError("invalid_record", record.kid)
        private = record.private_key
        if private is not None and (
            private.kid != record.kid
            or private.alg != record.alg
            or private.jose_key.thumbprint() != public.thumbprint
        ):
            raise KeyRingError("key_mismatch", record.kid)
        verification = VerificationKey(
            kid=record.kid,
            alg=public.alg,
            jose_key=public.jose_key,
            jwk=_public_jwk_dict(public.jose_key, record.kid, public.alg),
            created_at=_epoch(record.created_at),
            not_after=None if record.not_after is None else _epoch(record.not_after),
        )
        retired = None if record.retired_at is None else _epoch(record.retired_at)
        return _Entry(public=verification, private=private, retired_at=retired)

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any] | str) -> SigningKeyRing:
        """A verification-only ring from a published JWKS document (for services and tests that
        only have `/.well-known/jwks.json`). Every key needs a safe `kid`."""
        doc: Any = jwks
        if isinstance(jwks, str):
            try:
                doc = loads_json(jwks)
            except (ValueError, RecursionError):
                raise KeyRingError("invalid_record") from None
        keys = doc.get("keys") if isinstance(doc, Mapping) else None
        if not isinstance(keys, list):
            raise KeyRingError("invalid_record")
        epoch = datetime.fromtimestamp(0, UTC)
        records = []
        for jwk in keys:
            kid = jwk.get("kid") if isinstance(jwk, Mapping) else None
            alg = jwk.get("alg") if isinstance(jwk, Mapping) else None
            if not isinstance(kid, str) or not is_safe_kid(kid) or not isinstance(alg, str):
                raise KeyRingError("invalid_record")
            records.append(KeyRecord(kid=kid, alg=alg, public_jwk=jwk, created_at=epoch))
        return cls(records)

    @property
    def kids(self) -> tuple[str, ...]:
        """All key ids of the ring, newest first (including keys past `not_after`)."""
        return tuple(e.public.kid for e in self._newest_first)

    def signing_key(self, now: float | None = None) -> SigningKey:
        """The newest key that has a private part, has started and is neither retired nor
        past `not_after`. Raises `KeyRingError("no_signing_key")` when there is none."""
        at = _now(now)
        for entry in self._newest_first:
            if (
                entry.private is not None
                and entry.public.created_at <= at
                and (entry.retired_at is None or at < entry.retired_at)
                and (entry.public.not_after is None or at < entry.public.not_after)
            ):
                return entry.private
        raise KeyRingError("no_signing_key")

    def verification_key(self, kid: str, now: float | None = None) -> VerificationKey | None:
        """The public key named `kid`, or None if unknown or past its `not_after`."""
        entry = self._by_kid.get(kid)
        if entry is None:
            return None
        not_after = entry.public.not_after
        if not_after is not None and _now(now) >= not_after:
            return None
        return entry.public

    def jwks(self, now: float | None = None) -> dict[str, list[dict[str, str]]]:
        """The public JWKS document: every key not past `not_after`, newest first, public
        members only (`kty`, `crv`, `x`, `y`, `kid`, `alg`, `use`)."""
        at = _now(now)
        return {
            "keys": [
                dict(e.public.jwk)
                for e in self._newest_first
                if e.public.not_after is None or at < e.public.not_after
            ]
        }

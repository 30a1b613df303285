"""Encryption of the control plane's private signing keys at rest, and the key-encryption key.

`encrypt_private_key` / `decrypt_private_key` turn the private part of a `SigningKey` into a
storable string, encrypted under a key-encryption key (KEK). `resolve_kek` finds the KEK: the
configured one or, outside production, one kept in the data directory. Other domains that need a
key derived from the KEK (redaction markers) take it from `resolve_kek`.

Ciphertext format (all parts base64url without padding)::

    v1.<kek id>.<salt>.<nonce>.<AES-256-GCM ciphertext and tag>

The AES key is HKDF-SHA256(KEK, salt, info) with a fresh 16-byte salt per key, so no two keys
share an AES key and nonce reuse is not a concern. The associated data binds the version, `alg`
and `kid`: a ciphertext copied onto another row does not decrypt. The KEK id (HKDF output under a
different label, 8 bytes in hex) tells "encrypted under another KEK" apart from "corrupted", and
lets `decrypt_private_key` accept the old KEK alongside the new one during KEK rotation.
"""

from __future__ import annotations

import binascii
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final, Literal, TypeAlias, cast

import structlog
from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from control_plane.config import Settings
from control_plane.crypto.jose import (
    ALLOWED_ALGORITHMS,
    b64decode,
    b64encode,
)
from control_plane.crypto.jwk import SigningAlg, is_safe_kid
from control_plane.crypto.signing import SigningKey, wrap_private

log = structlog.get_logger(__name__)


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
    return wrap_private(native, cast(SigningAlg, alg), kid)


def blob_kek_id(blob: str) -> str | None:
    """The id of the KEK a blob made by ``encrypt_private_key`` was encrypted under (public, as
    ``kek_id``), or None for a blob that is not in that format."""
    parts = blob.split(".")
    return parts[1] if len(parts) == 5 and parts[0] == _CIPHERTEXT_VERSION else None


class KekMismatchError(Exception):
    """Keys in the database were encrypted under another key-encryption key than this
    process's: replicas sharing a database must share AGENTCTL_KEY_ENCRYPTION_KEY."""

    def __init__(self, what: str, stored: str, own: str) -> None:
        super().__init__(
            f"the {what} in the database was encrypted under another key-encryption key (KEK id "
            f"{stored}; this process's is {own}): every replica sharing a database must use the "
            "same AGENTCTL_KEY_ENCRYPTION_KEY (without it, each data dir makes its own)"
        )


def check_kek(what: str, blobs: Iterable[str], kek: str) -> None:
    """Raise ``KekMismatchError`` when one of ``blobs`` was encrypted under another KEK."""
    own = kek_id(kek)
    for blob in blobs:
        stored = blob_kek_id(blob)
        if stored is not None and stored != own:
            raise KekMismatchError(what, stored, own)


KEK_FILE = "key-encryption-key"


def resolve_kek(settings: Settings) -> str:
    """The configured key-encryption key or, outside production, one kept in the data dir."""
    if settings.key_encryption_key is not None:
        return settings.key_encryption_key.get_secret_value()
    path = Path(settings.data_dir) / KEK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(generate_kek() + "\n")
    log.warning("key_encryption_key_generated", path=str(path))
    return path.read_text().strip()

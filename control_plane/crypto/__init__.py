"""Key material of the control plane: JOSE plumbing (``jose``), the public keys agents register
(``jwk``), signing keys and the key ring (``signing``), encryption of private keys at rest and the
key-encryption key (``encryption``), client secrets (``secrets``), and the process's key ring
loaded from the database and rotated (``keystore``).

Helpers other domains use are re-exported here: ``from control_plane.crypto import resolve_kek``.
"""

from control_plane.crypto.encryption import (
    KekMismatchError,
    KeyEncryptionError,
    check_kek,
    decrypt_private_key,
    encrypt_private_key,
    generate_kek,
    kek_id,
    resolve_kek,
)

__all__ = [
    "KekMismatchError",
    "KeyEncryptionError",
    "check_kek",
    "decrypt_private_key",
    "encrypt_private_key",
    "generate_kek",
    "kek_id",
    "resolve_kek",
]

"""The checkpoint signing key: Ed25519, separate from the token signing keys, its private half
encrypted at rest under the KEK with the same scheme (``control_plane.crypto``), its public half
published as note verifier keys (one per log, named by the log's origin)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.audit import repository
from control_plane.audit.note import Verifier, public_bytes, verifier_key
from control_plane.crypto import KeyEncryptionError, decrypt_private_key, encrypt_private_key
from control_plane.crypto.signing import generate_signing_key
from control_plane.models import AuditKey

ALG: Final = "EdDSA"


@dataclass(frozen=True)
class CheckpointKey:
    kid: str
    public: bytes
    created_at: datetime
    private: Ed25519PrivateKey | None  # None when this process cannot decrypt it

    def verifier(self, origin: str) -> Verifier:
        return Verifier.parse(verifier_key(origin, self.public))


def _load(row: AuditKey, kek: str) -> CheckpointKey:
    try:
        native = decrypt_private_key(row.private_key_encrypted, kid=row.kid, alg=ALG, kek=kek)
        private = native.jose_key.private_key
    except KeyEncryptionError:
        private = None
    return CheckpointKey(
        kid=row.kid,
        public=bytes(row.public_key),
        created_at=row.created_at,
        private=private if isinstance(private, Ed25519PrivateKey) else None,
    )


async def load_keys(session: AsyncSession, kek: str) -> list[CheckpointKey]:
    return [_load(row, kek) for row in await repository.keys(session)]


async def ensure_key(session: AsyncSession, kek: str) -> CheckpointKey:
    """The newest checkpoint key, created on first use (one across replicas: the creation runs
    under an advisory lock on PostgreSQL, under the writer lock on SQLite). Flushes; the caller
    commits."""
    await repository.lock_keys(session)
    rows = await repository.keys(session)
    if rows:
        return _load(rows[-1], kek)
    signing = generate_signing_key(ALG)
    private = signing.jose_key.private_key
    assert isinstance(private, Ed25519PrivateKey)
    row = AuditKey(
        kid=signing.kid,
        public_key=public_bytes(private.public_key()),
        private_key_encrypted=encrypt_private_key(signing, kek),
    )
    await repository.add_key(session, row)
    return _load(row, kek)

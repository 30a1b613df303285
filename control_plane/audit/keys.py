"""The checkpoint signing key: Ed25519, separate from the token signing keys, its private half
encrypted at rest under the KEK with the same scheme (``control_plane.crypto``), its public half
published as note verifier keys (one per log, named by the log's origin).

Replicas sharing a database must agree on the KEK (or only one can sign, and the redaction
HMACs and content MACs differ between them): ``check_kek`` refuses, at start-up, a process whose
KEK is not the one the checkpoint key was encrypted under. A log's origin is fixed by its first
checkpoint (``log_origin``), so an issuer that differs between replicas or restarts does not
split it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.audit import repository
from control_plane.audit.note import Verifier, note_origin, public_bytes, verifier_key
from control_plane.audit.records import AuditContext
from control_plane.crypto import KeyEncryptionError, decrypt_private_key, encrypt_private_key
from control_plane.crypto import check_kek as check_blobs
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


async def log_origin(session: AsyncSession, ctx: AuditContext, domain: str) -> str:
    """The log's origin (its checkpoints' first line and the checkpoint key's name): the one it
    was first signed for, whatever the issuer of this process, so that replicas or restarts
    with another AGENTCTL_ISSUER (by default each takes its own host and port) keep signing
    and verifying one log under one name (C2SP tlog-checkpoint: the origin identifies the log
    and does not change); ``ctx.origin`` for a log without a checkpoint yet."""
    known = ctx.origins.get(domain)
    if known is not None:
        return known
    note = await repository.first_checkpoint_note(session, domain)
    if note is None:
        return ctx.origin(domain)
    ctx.origins[domain] = origin = note_origin(note)
    return origin


async def check_kek(session: AsyncSession, kek: str) -> None:
    """At start-up: this process's KEK must be the one the checkpoint key was encrypted under
    (otherwise it cannot sign, and its redaction key and content MACs differ from the other
    replicas'). Raises ``KekMismatchError`` naming both KEK ids and the setting to fix."""
    rows = await repository.keys(session)
    check_blobs("audit checkpoint key", (row.private_key_encrypted for row in rows), kek)

"""The checkpoint signing key: Ed25519, separate from the token signing keys, its private half
encrypted at rest under the KEK with the same scheme (``control_plane.crypto``), its public half
published as note verifier keys (one per log, named by the log's origin).

Replicas sharing a database must agree on both: the KEK (or only one can sign, and the
redaction HMACs and content MACs differ between them) and the issuer (which names each log's
origin: a checkpoint signed for another origin does not verify). ``check_replica`` refuses a
process that disagrees with what the database holds, at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.audit import repository
from control_plane.audit.note import Verifier, note_origin, public_bytes, verifier_key
from control_plane.audit.records import AuditContext
from control_plane.crypto import (
    KeyEncryptionError,
    check_kek,
    decrypt_private_key,
    encrypt_private_key,
)
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


class OriginMismatchError(Exception):
    """A log's checkpoints were signed for another origin than this process's issuer gives."""

    def __init__(self, domain: str, signed_for: str, own: str) -> None:
        self.domain, self.signed_for, self.own = domain, signed_for, own
        super().__init__(
            f"the audit log of domain {domain!r} is signed for origin {signed_for!r}, but this "
            f"process's issuer makes it {own!r}: every replica sharing a database must use the "
            "same AGENTCTL_ISSUER (without it, each takes its own host and port)"
        )


async def check_replica(session: AsyncSession, kek: str, ctx: AuditContext) -> None:
    """At start-up: this process's KEK must be the one the checkpoint key was encrypted under,
    and its issuer must give every log the origin its checkpoints were signed for. Raises
    ``KekMismatchError`` or ``OriginMismatchError`` (their messages name both sides and the
    setting to fix)."""
    rows = await repository.keys(session)
    check_kek("audit checkpoint key", (row.private_key_encrypted for row in rows), kek)
    for domain in await repository.log_domains(session):
        latest = await repository.latest_checkpoint(session, domain)
        if latest is not None and note_origin(latest.note) != ctx.origin(domain):
            raise OriginMismatchError(domain, note_origin(latest.note), ctx.origin(domain))

"""The bundle signing key and the JWS of ``.signatures.json`` (OPA's bundle signing spec).

One ES256 key, separate from the token signing keys, its private half encrypted at rest under
the KEK with the same scheme (``control_plane.crypto``), created on first use. ES256 is an
algorithm stock OPA verifies (``keys.<id>.algorithm: ES256``) and one our JOSE registry signs
with. Its signatures are randomised, so the bytes of a bundle differ between builds; the
bundle's revision (its ETag) does not, being derived from the content files only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from joserfc import jws
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.crypto import check_kek, decrypt_private_key, encrypt_private_key
from control_plane.crypto.jose import JWS_REGISTRY
from control_plane.crypto.signing import SigningKey, generate_signing_key
from control_plane.federation import repository
from control_plane.models import BundleSigningKey

ALG: Final = "ES256"


@dataclass(frozen=True, slots=True)
class BundleKey:
    kid: str
    public_jwk: dict[str, Any]
    private: SigningKey

    def pem(self) -> str:
        """The public key as PEM (SubjectPublicKeyInfo), for OPA's ``keys.<kid>.key``."""
        return self.private.jose_key.as_pem(private=False).decode("ascii")

    def sign(self, files: list[dict[str, str]]) -> str:
        """The compact JWS listing ``files`` (OPA: header ``kid``, payload ``files``, ``keyid``)."""
        payload = json.dumps(
            {"files": files, "keyid": self.kid}, separators=(",", ":"), ensure_ascii=False
        )
        return jws.serialize_compact(
            {"alg": ALG, "kid": self.kid},
            payload.encode("utf-8"),
            self.private.jose_key,
            registry=JWS_REGISTRY,
        )


def _load(row: BundleSigningKey, kek: str) -> BundleKey:
    private = decrypt_private_key(row.private_key_encrypted, kid=row.kid, alg=row.alg, kek=kek)
    return BundleKey(kid=row.kid, public_jwk=dict(row.public_jwk), private=private)


async def check_kek_of_key(session: AsyncSession, kek: str) -> None:
    """Raise ``KekMismatchError`` when the bundle signing key was encrypted under another KEK."""
    rows = await repository.signing_keys(session)
    check_kek("bundle signing key", (row.private_key_encrypted for row in rows), kek)


async def ensure_key(session: AsyncSession, kek: str) -> BundleKey:
    """The newest bundle signing key, created on first use (one across replicas: created under
    an advisory lock on PostgreSQL, in the writer turn on SQLite). Flushes; the caller commits.
    Raises ``KeyEncryptionError`` when the stored key cannot be decrypted with ``kek``."""
    rows = await repository.signing_keys(session)
    if rows:
        return _load(rows[-1], kek)
    await repository.lock_signing_keys(session)
    rows = await repository.signing_keys(session)
    if rows:
        return _load(rows[-1], kek)
    key = generate_signing_key(ALG)
    row = BundleSigningKey(
        kid=key.kid,
        alg=ALG,
        public_jwk=key.public_jwk(),
        private_key_encrypted=encrypt_private_key(key, kek),
    )
    await repository.add_signing_key(session, row)
    return _load(row, kek)


def public_pem(jwk: dict[str, Any]) -> str:
    """PEM of a public JWK (for keys listed without their private half)."""
    from joserfc.jwk import ECKey

    key = ECKey.import_key(jwk)
    native = key.public_key
    return native.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")

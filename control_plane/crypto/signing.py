"""The control plane's signing keys and the key ring that holds them.

- `generate_signing_key` creates a key (Ed25519 for `EdDSA` by default, optionally P-256 for
  `ES256`) whose `kid` is its RFC 7638 thumbprint, so a `kid` is always a short URL-safe token.
- `SigningKeyRing` is built from the rows the keystore loads (`KeyRecord`). It picks the key that
  signs now and answers `kid` lookups for verification, keeping retired public keys until
  `not_after`, that is until every token they signed has expired (`public_key_not_after`).
  `jwks()` is the document served at `/.well-known/jwks.json`.

Pure: no database, no settings. JOSE comes from joserfc through `crypto.jose`, whose registry
knows exactly `EdDSA` and `ES256`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc.jwk import ECKey, OKPKey

from control_plane.crypto.jose import (
    ALLOWED_ALGORITHMS,
    JoseKey,
    check_key_for,
    loads_json,
)
from control_plane.crypto.jwk import (
    InvalidClientJWK,
    SigningAlg,
    is_safe_kid,
    parse_client_public_jwk,
    public_jwk_dict,
)


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
        return public_jwk_dict(self.jose_key, self.kid, self.alg)

    def _private_pkcs8(self) -> bytes:
        private = self.jose_key.private_key
        if private is None:  # pragma: no cover - SigningKey is only built from private keys
            raise ValueError("not a private key")
        return private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def wrap_private(native: Any, alg: SigningAlg, kid: str | None = None) -> SigningKey:
    jose_key: JoseKey = OKPKey.import_key(native) if alg == "EdDSA" else ECKey.import_key(native)
    kid = kid if kid is not None else jose_key.thumbprint()
    check_key_for(alg, jose_key)
    return SigningKey(kid=kid, alg=alg, jose_key=jose_key)


def generate_signing_key(alg: SigningAlg = "EdDSA") -> SigningKey:
    """Create a new signing key; its `kid` is the RFC 7638 thumbprint of its public key."""
    if alg == "EdDSA":
        return wrap_private(ed25519.Ed25519PrivateKey.generate(), alg)
    if alg == "ES256":
        return wrap_private(ec.generate_private_key(ec.SECP256R1()), alg)
    raise ValueError(
        f"unsupported signing algorithm {alg!r}; use one of {sorted(ALLOWED_ALGORITHMS)}"
    )


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
            jwk=public_jwk_dict(public.jose_key, record.kid, public.alg),
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

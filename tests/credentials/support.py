"""Shared values and token-forging helpers for the credentials crypto tests.

The forger builds compact JWS by hand (base64url of arbitrary JSON, signed with raw cryptography
keys or HMAC, or not signed at all), so tests can present exactly the tokens an attacker would,
without going through the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from control_plane.crypto.signing import KeyRecord, SigningKey

#: Fixed "now" for every test (2027-01-15), so expiry tests are exact.
NOW = 1_800_000_000
ISSUER = "https://control-plane.example"
AUDIENCE = "https://control-plane.example/v1"
TOKEN_ENDPOINT = "https://control-plane.example/oauth/token"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def raw_sign(key: SigningKey, data: bytes) -> bytes:
    """Sign like a JWS library would, straight with cryptography (not our code)."""
    private = key.jose_key.private_key
    if isinstance(private, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    return private.sign(data)


@dataclass
class Forge:
    """Build compact tokens from any header and claims."""

    def compact(self, header: Any, claims: Any, signature: bytes | str = b"") -> str:
        signing_input = f"{b64json(header)}.{b64json(claims)}"
        sig = signature if isinstance(signature, str) else b64(signature)
        return f"{signing_input}.{sig}"

    def signed(self, key: SigningKey, header: Any, claims: Any) -> str:
        signing_input = f"{b64json(header)}.{b64json(claims)}"
        return f"{signing_input}.{b64(raw_sign(key, signing_input.encode()))}"

    def hmac_signed(self, secret: bytes, header: dict[str, Any], claims: Any) -> str:
        signing_input = f"{b64json(header)}.{b64json(claims)}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(mac)}"


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def record(key: SigningKey, created: float, **kwargs: Any) -> KeyRecord:
    """A key-ring row for `key`, created at epoch `created`, with its private key."""
    return KeyRecord(
        kid=key.kid,
        alg=key.alg,
        public_jwk=key.public_jwk(),
        created_at=at(created),
        private_key=key,
        **kwargs,
    )

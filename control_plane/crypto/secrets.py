"""Client secrets for `client_secret_basic`: generation, the stored hash, constant-time checks."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

#: Recognisable prefix so secret scanners and log filters can spot leaked client secrets.
CLIENT_SECRET_PREFIX: Final = "acp_cs_"  # noqa: S105 - public prefix
_SECRET_SCHEME: Final = "sha256"  # noqa: S105 - hash scheme name
_MAX_SECRET_LENGTH: Final = 512


def generate_client_secret() -> str:
    """A new client secret: `acp_cs_` followed by 256 random bits in base64url (43 chars)."""
    return CLIENT_SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The value to store for a client secret: `sha256$<hex digest>`.

    A slow password hash (bcrypt, scrypt, Argon2) exists to make guessing low-entropy human
    passwords expensive. Our secrets are 256-bit random values: there is nothing to guess, and a
    preimage of SHA-256 is out of reach, so a single SHA-256 is as strong as any KDF here while
    costing microseconds instead of tens of milliseconds on every token request (and not handing
    attackers a cheap CPU-exhaustion lever on the token endpoint). The scheme prefix leaves room
    to change this later without a flag day.
    """
    if not isinstance(secret, str) or not secret:
        raise ValueError("secret must be a non-empty string")
    return f"{_SECRET_SCHEME}${hashlib.sha256(secret.encode('utf-8')).hexdigest()}"


def verify_secret(secret: object, stored: str) -> bool:
    """True when `secret` hashes to `stored`; the comparison is constant-time. Any malformed
    input (wrong type, unknown scheme, undecodable text) is simply False."""
    if not isinstance(secret, str) or not isinstance(stored, str):
        return False
    if not secret or len(secret) > _MAX_SECRET_LENGTH:
        return False
    scheme, separator, expected = stored.partition("$")
    if scheme != _SECRET_SCHEME or not separator:
        return False
    try:
        candidate = hashlib.sha256(secret.encode("utf-8")).hexdigest().encode("ascii")
        return hmac.compare_digest(candidate, expected.encode("utf-8"))
    except UnicodeEncodeError:
        return False

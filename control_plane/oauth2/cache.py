"""The verified-access-token cache: a route skips the signature check for a token it verified
moments ago. Revocation and agent status are checked by the caller on every request, hit or miss,
so revocation always wins.

cachetools' ``TLRUCache`` keeps the entries (least recently used evicted first, each expiring at
its own time); its clock is the caller's ``now`` (Unix seconds), so callers and tests pass time
explicitly, as everywhere in ``oauth2``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from cachetools import TLRUCache

from control_plane.crypto.signing import SigningKeyRing
from control_plane.oauth2.tokens import (
    DEFAULT_LEEWAY_SECONDS,
    MAX_TOKEN_LENGTH,
    VerifiedAccessToken,
    verify_access_token,
)


def token_fingerprint(token: str | bytes) -> str:
    """SHA-256 hex of a token, for cache keys and logs in place of the token itself.

    Do not use it as the key of a revocation list: an ES256 signature can be rewritten into a
    second valid one (s -> n - s), which yields another string and another fingerprint for the
    same token. Revoke by `jti`.
    """
    data = token.encode("utf-8", "surrogatepass") if isinstance(token, str) else token
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class _CacheEntry:
    verified: VerifiedAccessToken
    issuer: str
    audience: str
    valid_until: float


def _valid_until(_key: bytes, entry: _CacheEntry, _now: float) -> float:
    return entry.valid_until


class VerifiedTokenCache:
    """LRU of verified access tokens keyed by SHA-256 of the token.

    An entry lives until the token's `exp` (without leeway) and at most `max_ttl_seconds`, and
    remembers the issuer and audience it was verified for. Safe to share between threads and
    coroutines: every operation takes a lock for a few dictionary operations and never awaits.
    """

    def __init__(self, max_entries: int = 10_000, max_ttl_seconds: float = 300.0) -> None:
        if max_entries < 1 or max_ttl_seconds <= 0:
            raise ValueError("max_entries and max_ttl_seconds must be positive")
        self._max_ttl = max_ttl_seconds
        self._clock = 0.0
        self._entries: TLRUCache[bytes, _CacheEntry] = TLRUCache(
            maxsize=max_entries, ttu=_valid_until, timer=lambda: self._clock
        )
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(
        self, token: str, *, issuer: str, audience: str, now: float | None = None
    ) -> VerifiedAccessToken | None:
        """The cached verification of `token` for this issuer and audience, if still fresh."""
        key = self._key(token)
        with self._lock:
            self._clock = time.time() if now is None else float(now)
            entry = self._entries.get(key)
            if entry is None or entry.issuer != issuer or entry.audience != audience:
                return None
            return entry.verified

    def put(
        self,
        token: str,
        verified: VerifiedAccessToken,
        *,
        issuer: str,
        audience: str,
        now: float | None = None,
    ) -> None:
        at = time.time() if now is None else float(now)
        valid_until = min(verified.expires_at, at + self._max_ttl)
        if valid_until <= at:
            return
        with self._lock:
            self._clock = at
            self._entries[self._key(token)] = _CacheEntry(verified, issuer, audience, valid_until)

    def discard(self, token: str) -> None:
        with self._lock:
            self._entries.pop(self._key(token), None)

    def clear(self) -> None:
        """Drop everything, e.g. after removing a compromised signing key from the ring."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def verify_access_token_cached(
    cache: VerifiedTokenCache,
    keyring: SigningKeyRing,
    token: object,
    *,
    issuer: str,
    audience: str,
    leeway: float = DEFAULT_LEEWAY_SECONDS,
    now: float | None = None,
) -> VerifiedAccessToken:
    """`verify_access_token` through `cache`. A hit is only served while the key that signed the
    token is still in `keyring`, so pulling a key out of the ring stops its tokens at once."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        # Hash nothing unbounded or odd; let the full check produce the precise reason.
        return verify_access_token(
            keyring, token, issuer=issuer, audience=audience, leeway=leeway, now=now
        )
    at = time.time() if now is None else float(now)
    hit = cache.get(token, issuer=issuer, audience=audience, now=at)
    if hit is not None:
        if keyring.verification_key(hit.kid, at) is not None:
            return hit
        cache.discard(token)
    verified = verify_access_token(
        keyring, token, issuer=issuer, audience=audience, leeway=leeway, now=at
    )
    cache.put(token, verified, issuer=issuer, audience=audience, now=at)
    return verified

"""Client secrets, token fingerprints and the verified-token cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import uuid
from collections.abc import Callable
from typing import Any, cast

import pytest
from cachetools import TTLCache

from control_plane.config import Settings
from control_plane.crypto.secrets import (
    CLIENT_SECRET_PREFIX,
    generate_client_secret,
    hash_secret,
    verify_secret,
)
from control_plane.crypto.signing import KeyRecord, SigningKey, SigningKeyRing
from control_plane.models import Agent
from control_plane.oauth2 import cache as tokens
from control_plane.oauth2.agent_auth import AgentAuthenticator
from control_plane.oauth2.auth_state import AuthState
from control_plane.oauth2.cache import (
    VerifiedTokenCache,
    token_fingerprint,
    verify_access_token_cached,
)
from control_plane.oauth2.tokens import TokenError, issue_access_token, verify_access_token
from tests.fixtures.jose import AUDIENCE, ISSUER, NOW

# --- client secrets ------------------------------------------------------------------------


def test_generated_secret_has_prefix_and_256_random_bits() -> None:
    secrets_seen = {generate_client_secret() for _ in range(100)}
    assert len(secrets_seen) == 100
    for secret in secrets_seen:
        assert secret.startswith(CLIENT_SECRET_PREFIX)
        body = secret.removeprefix(CLIENT_SECRET_PREFIX)
        assert len(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))) == 32
        assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_hash_and_verify() -> None:
    secret = generate_client_secret()
    stored = hash_secret(secret)

    assert stored == "sha256$" + hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in stored
    assert verify_secret(secret, stored)
    assert not verify_secret(secret + "x", stored)
    assert not verify_secret(secret[:-1], stored)
    assert not verify_secret(generate_client_secret(), stored)


@pytest.mark.parametrize(
    ("secret", "stored"),
    [
        (None, "sha256$00"),
        (b"bytes", "sha256$00"),
        ("", "sha256$" + hashlib.sha256(b"").hexdigest()),
        ("s", "md5$" + hashlib.md5(b"s").hexdigest()),  # noqa: S324 - proving it is refused
        ("s", hashlib.sha256(b"s").hexdigest()),  # no scheme
        ("s", "sha256$"),
        ("s", "sha256$ünïcode"),
        ("\ud800", "sha256$00"),  # lone surrogate cannot be encoded
        ("x" * 10_000, "sha256$" + hashlib.sha256(b"x" * 10_000).hexdigest()),
    ],
)
def test_malformed_secret_input_is_false_not_an_exception(secret: Any, stored: str) -> None:
    assert verify_secret(secret, stored) is False


def test_verification_uses_a_constant_time_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    # The module under test calls hmac.compare_digest through the shared stdlib module.
    monkeypatch.setattr(hmac, "compare_digest", spy)
    secret = generate_client_secret()
    assert verify_secret(secret, hash_secret(secret))
    assert not verify_secret("wrong", hash_secret(secret))
    assert len(calls) == 2


def test_token_fingerprint_is_sha256_hex() -> None:
    assert token_fingerprint("abc") == hashlib.sha256(b"abc").hexdigest()
    assert token_fingerprint(b"abc") == token_fingerprint("abc")


# --- cache ---------------------------------------------------------------------------------


def _issue(ring: SigningKeyRing, now: float = NOW, lifetime: int = 600, subject: str = "a") -> str:
    token, _ = issue_access_token(
        ring,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject=subject,
        client_id="c",
        scope=["audit:write"],
        lifetime_seconds=lifetime,
        now=now,
    )
    return token


def _cached(cache: VerifiedTokenCache, ring: SigningKeyRing, token: Any, **kw: Any) -> Any:
    args: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "now": NOW}
    args.update(kw)
    return verify_access_token_cached(cache, ring, token, **args)


def test_hit_skips_verification(ring: SigningKeyRing, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = VerifiedTokenCache()
    token = _issue(ring)
    first = _cached(cache, ring, token)

    calls = 0
    real = tokens.verify_access_token

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(tokens, "verify_access_token", counting)
    assert _cached(cache, ring, token, now=NOW + 10) is first
    assert calls == 0


def test_entry_expires_with_the_token(ring: SigningKeyRing) -> None:
    cache = VerifiedTokenCache()
    token = _issue(ring, lifetime=60)
    _cached(cache, ring, token)
    assert cache.get(token, issuer=ISSUER, audience=AUDIENCE, now=NOW + 59) is not None
    assert cache.get(token, issuer=ISSUER, audience=AUDIENCE, now=NOW + 60) is None
    with pytest.raises(TokenError) as caught:
        _cached(cache, ring, token, now=NOW + 61, leeway=0)
    assert caught.value.reason == "expired"


def test_entry_lifetime_is_capped(ring: SigningKeyRing) -> None:
    cache = VerifiedTokenCache(max_ttl_seconds=5)
    token = _issue(ring)
    _cached(cache, ring, token)
    assert cache.get(token, issuer=ISSUER, audience=AUDIENCE, now=NOW + 4) is not None
    assert cache.get(token, issuer=ISSUER, audience=AUDIENCE, now=NOW + 5) is None


def test_entry_is_bound_to_issuer_and_audience(ring: SigningKeyRing) -> None:
    cache = VerifiedTokenCache()
    token = _issue(ring)
    _cached(cache, ring, token)
    with pytest.raises(TokenError) as caught:
        _cached(cache, ring, token, audience="https://other.example")
    assert caught.value.reason == "invalid_audience"


def test_lru_is_bounded(ring: SigningKeyRing) -> None:
    cache = VerifiedTokenCache(max_entries=3)
    issued = [_issue(ring, subject=f"agent-{i}") for i in range(5)]
    for token in issued:
        _cached(cache, ring, token)
    assert len(cache) == 3
    assert cache.get(issued[0], issuer=ISSUER, audience=AUDIENCE, now=NOW) is None
    # Touching the oldest survivor keeps it over a newer one.
    assert cache.get(issued[2], issuer=ISSUER, audience=AUDIENCE, now=NOW) is not None
    _cached(cache, ring, _issue(ring, subject="agent-new"))
    assert cache.get(issued[2], issuer=ISSUER, audience=AUDIENCE, now=NOW) is not None
    assert cache.get(issued[3], issuer=ISSUER, audience=AUDIENCE, now=NOW) is None


def test_removing_the_signing_key_from_the_ring_stops_cached_tokens(
    ring: SigningKeyRing,
    ed_key: SigningKey,
    es_key: SigningKey,
    make_record: Callable[..., KeyRecord],
) -> None:
    cache = VerifiedTokenCache()
    token = _issue(ring)
    _cached(cache, ring, token)

    emergency = SigningKeyRing([make_record(es_key, NOW - 10)])  # ed_key pulled out
    with pytest.raises(TokenError) as caught:
        _cached(cache, emergency, token)
    assert caught.value.reason == "unknown_kid"
    assert len(cache) == 0


def test_invalid_tokens_are_never_cached(ring: SigningKeyRing) -> None:
    cache = VerifiedTokenCache()
    for bad in ("x.y.z", "a" * 10_000, "\ud800", None, b"bytes.are.fine"):
        with pytest.raises(TokenError):
            _cached(cache, ring, bad)
    assert len(cache) == 0


def test_cached_result_equals_uncached(ring: SigningKeyRing) -> None:
    token = _issue(ring)
    direct = verify_access_token(ring, token, issuer=ISSUER, audience=AUDIENCE, now=NOW)
    assert _cached(VerifiedTokenCache(), ring, token) == direct


def test_cache_is_thread_safe(ring: SigningKeyRing) -> None:
    cache = VerifiedTokenCache(max_entries=50)
    issued = [_issue(ring, subject=f"agent-{i}") for i in range(100)]
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(400):
                token = issued[(i * 7 + offset) % len(issued)]
                assert _cached(cache, ring, token).subject == f"agent-{issued.index(token)}"
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) <= 50


# --- the agent's authentication state, reused for auth_state_ttl_seconds ----------------------


async def test_a_state_expiring_while_it_is_looked_up_is_a_miss_not_a_500() -> None:
    """Found and read in one lookup: a reused state that expired between a membership test and
    the read raised KeyError, a 500 (seen once in tests/oauth2/test_replicas.py's server).
    The cache's clock moves 0.6 s at each lookup, so a state stored at 0 s with a 1 s TTL is
    fresh at the first lookup and gone at any second."""
    ticks = iter(i * 0.6 for i in range(100))
    auth = AgentAuthenticator(cast(Any, None), Settings(auth_state_ttl_seconds=1))
    auth._state = TTLCache(maxsize=10, ttl=1, timer=lambda: next(ticks))
    agent = Agent(name="bot", domain="payments", owner="me")
    client_id = uuid.uuid4()
    kept = AuthState(agent, False, None, None, False)
    auth._state[(client_id, "jti-1")] = kept
    # No session: a hit never reads the database.
    assert await auth._auth_state(cast(Any, None), client_id, agent.id, "jti-1") is kept

"""RFC 7523 private_key_jwt client assertions, and confusion between assertions and tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from control_plane.crypto.jwk import PublicJWK, parse_client_public_jwk
from control_plane.crypto.signing import SigningKey, SigningKeyRing, generate_signing_key
from control_plane.oauth2.assertions import peek_assertion_client_id, verify_client_assertion
from control_plane.oauth2.tokens import (
    ClientAssertionError,
    TokenError,
    issue_access_token,
    verify_access_token,
)
from tests.fixtures.jose import AUDIENCE, ISSUER, NOW, TOKEN_ENDPOINT


class Clients:
    """Two registered clients, each with its own key pair, plus a lookup counter."""

    def __init__(self, alice: SigningKey, bob: SigningKey) -> None:
        self.keys = {"client-alice": alice, "client-bob": bob}
        self.registered = {
            cid: parse_client_public_jwk(k.public_jwk()) for cid, k in self.keys.items()
        }
        self.lookups: list[str] = []

    def lookup(self, client_id: str) -> PublicJWK | None:
        self.lookups.append(client_id)
        return self.registered.get(client_id)


@pytest.fixture
def clients(attacker_key: SigningKey, es_key: SigningKey) -> Clients:
    # Alice uses Ed25519, Bob P-256: the two algorithms we accept.
    return Clients(alice=attacker_key, bob=es_key)


def _claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": "client-alice",
        "sub": "client-alice",
        "aud": TOKEN_ENDPOINT,
        "exp": NOW + 120,
        "iat": NOW,
        "jti": "assertion-1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def _assertion(
    forge: Any, key: SigningKey, header: dict[str, Any] | None = None, **overrides: Any
) -> str:
    return str(forge.signed(key, header or {"alg": key.alg, "typ": "JWT"}, _claims(**overrides)))


def _verify(clients: Clients, assertion: Any, **overrides: Any) -> Any:
    args: dict[str, Any] = {
        "client_id_hint": None,
        "lookup_client_jwk": clients.lookup,
        "token_endpoint_url": TOKEN_ENDPOINT,
        "now": NOW,
    }
    args.update(overrides)
    lookup = args["lookup_client_jwk"]

    async def lookup_async(client_id: str) -> Any:
        return lookup(client_id)

    args["lookup_client_jwk"] = lookup_async
    return asyncio.run(verify_client_assertion(assertion, **args))


def _reason(clients: Clients, assertion: Any, **overrides: Any) -> str:
    with pytest.raises(ClientAssertionError) as caught:
        _verify(clients, assertion, **overrides)
    return caught.value.reason


# --- success -------------------------------------------------------------------------------


@pytest.mark.parametrize("client_id", ["client-alice", "client-bob"])
def test_valid_assertion_returns_client_jti_and_exp(
    clients: Clients, forge: Any, client_id: str
) -> None:
    key = clients.keys[client_id]
    assertion = _assertion(forge, key, iss=client_id, sub=client_id, jti=f"j-{client_id}")

    result = _verify(clients, assertion, client_id_hint=client_id)

    assert result.client_id == client_id
    assert result.jti == f"j-{client_id}"
    assert result.exp == NOW + 120
    assert clients.lookups == [client_id]


def test_replayed_assertion_yields_the_same_jti_for_the_one_time_store(
    clients: Clients, forge: Any
) -> None:
    # The one-time store is the caller's (a table shared by replicas); what this layer owes it
    # is the same jti and an exp bounded by 5 minutes, every time the assertion is presented.
    assertion = _assertion(forge, clients.keys["client-alice"])
    first, second = _verify(clients, assertion), _verify(clients, assertion)
    assert (first.jti, first.exp) == (second.jti, second.exp) == ("assertion-1", NOW + 120)


@pytest.mark.parametrize("typ", [..., "JWT", "jwt", "client-authentication+jwt", "application/jwt"])
def test_accepted_typ_values(clients: Clients, forge: Any, typ: Any) -> None:
    header: dict[str, Any] = {"alg": "EdDSA"} if typ is ... else {"alg": "EdDSA", "typ": typ}
    assert _verify(clients, _assertion(forge, clients.keys["client-alice"], header)).jti


@pytest.mark.parametrize(
    "typ", ["at+jwt", "AT+JWT", "application/at+jwt", "dpop+jwt", None, 1, ["JWT"]]
)
def test_other_typ_values_are_refused(clients: Clients, forge: Any, typ: Any) -> None:
    header = {"alg": "EdDSA", "typ": typ}
    assert (
        _reason(clients, _assertion(forge, clients.keys["client-alice"], header)) == "invalid_typ"
    )


def test_issuer_identifier_audience_is_accepted_when_enabled(clients: Clients, forge: Any) -> None:
    assertion = _assertion(forge, clients.keys["client-alice"], aud=ISSUER)
    assert _reason(clients, assertion) == "invalid_audience"
    assert _verify(clients, assertion, issuer=ISSUER).client_id == "client-alice"


def test_single_element_audience_list_is_accepted(clients: Clients, forge: Any) -> None:
    assertion = _assertion(forge, clients.keys["client-alice"], aud=[TOKEN_ENDPOINT])
    assert _verify(clients, assertion).client_id == "client-alice"


def test_async_lookup(clients: Clients, forge: Any) -> None:
    async def lookup(client_id: str) -> PublicJWK | None:
        await asyncio.sleep(0)
        return clients.lookup(client_id)

    async def run() -> Any:
        return await verify_client_assertion(
            _assertion(forge, clients.keys["client-alice"]),
            client_id_hint="client-alice",
            lookup_client_jwk=lookup,
            token_endpoint_url=TOKEN_ENDPOINT,
            now=NOW,
        )

    assert asyncio.run(run()).jti == "assertion-1"

    async def run_bad() -> Any:
        return await verify_client_assertion(
            _assertion(forge, clients.keys["client-bob"]),  # Bob's key, Alice's claims
            client_id_hint=None,
            lookup_client_jwk=lookup,
            token_endpoint_url=TOKEN_ENDPOINT,
            now=NOW,
        )

    with pytest.raises(ClientAssertionError) as caught:
        asyncio.run(run_bad())
    assert caught.value.reason in {"alg_mismatch", "bad_signature"}


def test_peek_names_the_client_without_verifying(clients: Clients, forge: Any) -> None:
    assertion = _assertion(forge, clients.keys["client-bob"])  # wrong key, but peek can't tell
    assert peek_assertion_client_id(assertion) == "client-alice"
    with pytest.raises(ClientAssertionError):
        peek_assertion_client_id("not a jwt")


def test_lookup_errors_propagate(forge: Any, attacker_key: SigningKey) -> None:
    async def broken(client_id: str) -> PublicJWK | None:
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError):
        asyncio.run(
            verify_client_assertion(
                _assertion(forge, attacker_key),
                client_id_hint=None,
                lookup_client_jwk=broken,
                token_endpoint_url=TOKEN_ENDPOINT,
                now=NOW,
            )
        )


# --- attacks -------------------------------------------------------------------------------


def test_signed_by_another_clients_key_is_refused(clients: Clients, forge: Any) -> None:
    # Bob (P-256) signs an assertion claiming to be Alice (Ed25519).
    bob_key = clients.keys["client-bob"]
    assert _reason(clients, _assertion(forge, bob_key, {"alg": "ES256"})) == "alg_mismatch"
    # A key of the same type as Alice's, registered to someone else, fares no better.
    mallory = generate_signing_key("EdDSA")
    clients.registered["client-mallory"] = parse_client_public_jwk(mallory.public_jwk())
    assert _reason(clients, _assertion(forge, mallory)) == "bad_signature"
    # Bob's key verifies Bob's own assertion, of course.
    assert _verify(clients, _assertion(forge, bob_key, iss="client-bob", sub="client-bob"))


def test_unknown_client_is_refused(clients: Clients, forge: Any) -> None:
    assertion = _assertion(forge, clients.keys["client-alice"], iss="client-zed", sub="client-zed")
    assert _reason(clients, assertion) == "unknown_client"


def test_iss_different_from_sub_is_refused(clients: Clients, forge: Any) -> None:
    assertion = _assertion(forge, clients.keys["client-alice"], sub="client-bob")
    assert _reason(clients, assertion) == "issuer_subject_mismatch"
    assert clients.lookups == []  # refused before any key lookup


def test_client_id_hint_must_match(clients: Clients, forge: Any) -> None:
    assertion = _assertion(forge, clients.keys["client-alice"])
    assert _reason(clients, assertion, client_id_hint="client-bob") == "client_id_mismatch"


@pytest.mark.parametrize(
    "aud",
    [
        "https://control-plane.example/oauth/token/",
        "https://evil.example/oauth/token",
        AUDIENCE,
        ISSUER,
        [TOKEN_ENDPOINT, "https://evil.example/oauth/token"],
        [],
        ...,
        None,
    ],
)
def test_wrong_audience_is_refused(clients: Clients, forge: Any, aud: Any) -> None:
    assertion = _assertion(forge, clients.keys["client-alice"], aud=aud)
    assert _reason(clients, assertion) == "invalid_audience"


def test_exp_more_than_one_hour_ahead_is_refused(clients: Clients, forge: Any) -> None:
    """One hour: Authlib's PrivateKeyJWT default (issue 8 fault 5)."""
    key = clients.keys["client-alice"]
    assert _reason(clients, _assertion(forge, key, exp=NOW + 3601), leeway=0) == "exp_too_far"
    assert _reason(clients, _assertion(forge, key, exp=NOW + 3700)) == "exp_too_far"
    assert _reason(clients, _assertion(forge, key, exp=NOW + 10**9)) == "exp_too_far"
    assert _verify(clients, _assertion(forge, key, exp=NOW + 3600), leeway=0).exp == NOW + 3600


def test_tighter_window_can_be_configured(clients: Clients, forge: Any) -> None:
    assertion = _assertion(forge, clients.keys["client-alice"], exp=NOW + 120)
    assert _reason(clients, assertion, max_future_seconds=60, leeway=0) == "exp_too_far"
    with pytest.raises(ValueError, match="max_future_seconds"):
        _verify(clients, assertion, max_future_seconds=3601)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": ...}, "missing_claim"),
        ({"exp": NOW - 31}, "expired"),
        ({"jti": ...}, "missing_claim"),
        ({"jti": ""}, "malformed"),
        ({"jti": 42}, "malformed"),
        ({"jti": "j" * 256}, "malformed"),
        ({"iss": ..., "sub": ...}, "missing_claim"),
        ({"nbf": NOW + 120}, "not_yet_valid"),
        ({"iat": NOW + 120}, "issued_in_future"),
    ],
)
def test_claim_violations_are_refused(
    clients: Clients, forge: Any, overrides: dict[str, Any], reason: str
) -> None:
    assertion = _assertion(forge, clients.keys["client-alice"], **overrides)
    assert _reason(clients, assertion) == reason


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_none_and_hmac_with_the_registered_public_key_are_refused(
    clients: Clients, forge: Any, alg: str
) -> None:
    jwk = clients.registered["client-alice"].as_dict()
    header = {"alg": alg, "typ": "JWT"}
    for secret in (jwk["x"].encode(), clients.registered["client-alice"].to_json().encode()):
        forged = forge.hmac_signed(secret, header, _claims())
        assert _reason(clients, forged) == "unsupported_alg"
    assert clients.lookups == []


def test_key_headers_are_ignored_and_nothing_is_fetched(
    clients: Clients,
    forge: Any,
    key_server: Any,
    outbound_connections: list[Any],
) -> None:
    mallory = generate_signing_key("EdDSA")
    alice = clients.keys["client-alice"]
    url = f"{key_server.url}/jwks.json"
    for extra in (
        {"jku": url, "kid": mallory.kid},
        {"x5u": f"{key_server.url}/cert.pem"},
        {"jwk": mallory.public_jwk()},
        {"x5c": ["MIIB"]},
        {"kid": "../../etc/passwd"},
    ):
        header = {"alg": "EdDSA", "typ": "JWT", **extra}
        # Mallory's signature fails: the header's key or URL is never used ...
        assert _reason(clients, _assertion(forge, mallory, header)) == "bad_signature"
        # ... and Alice's own assertion is judged on her registered key alone.
        assert _verify(clients, _assertion(forge, alice, header)).client_id == "client-alice"

    assert key_server.requests == []
    assert outbound_connections == []


@pytest.mark.parametrize("extra", [{"crit": ["exp"]}, {"b64": False}])
def test_extension_headers_are_refused(clients: Clients, forge: Any, extra: dict[str, Any]) -> None:
    header = {"alg": "EdDSA", "typ": "JWT", **extra}
    assert _reason(clients, _assertion(forge, clients.keys["client-alice"], header)) == (
        "forbidden_header"
    )


# --- token confusion -----------------------------------------------------------------------


def test_access_token_used_as_client_assertion_is_refused(
    clients: Clients, make_record: Callable[..., Any], attacker_key: SigningKey, forge: Any
) -> None:
    # Worst case: the control plane's signing key IS Alice's registered key, and the access
    # token's iss/sub/aud are shaped like an assertion. The typ still gives it away.
    ring = SigningKeyRing([make_record(attacker_key, NOW - 60)])
    token, _ = issue_access_token(
        ring,
        issuer="client-alice",
        audience=TOKEN_ENDPOINT,
        subject="client-alice",
        client_id="client-alice",
        scope=["audit:write"],
        lifetime_seconds=120,
        now=NOW,
    )
    assert _reason(clients, token) == "invalid_typ"

    # And a realistic access token fails on every other count too.
    real, _ = issue_access_token(
        ring,
        issuer=ISSUER,
        audience=AUDIENCE,
        subject="agent-1",
        client_id="client-alice",
        scope=[],
        lifetime_seconds=120,
        now=NOW,
    )
    assert _reason(clients, real) == "invalid_typ"
    header = {"alg": "EdDSA", "typ": "JWT", "kid": attacker_key.kid}
    retyped = forge.signed(
        attacker_key,
        header,
        {"iss": ISSUER, "sub": "agent-1", "aud": AUDIENCE, "exp": NOW + 60, "jti": "x"},
    )
    assert _reason(clients, retyped) == "issuer_subject_mismatch"


def test_client_assertion_used_as_access_token_is_refused(
    clients: Clients, forge: Any, make_record: Callable[..., Any], attacker_key: SigningKey
) -> None:
    # Again the worst case: Alice's key is in the control plane's ring under her kid.
    ring = SigningKeyRing([make_record(attacker_key, NOW - 60)])
    header = {"alg": "EdDSA", "typ": "JWT", "kid": attacker_key.kid}
    assertion = _assertion(forge, attacker_key, header)

    with pytest.raises(TokenError) as caught:
        verify_access_token(ring, assertion, issuer=ISSUER, audience=AUDIENCE, now=NOW)
    assert caught.value.reason == "invalid_typ"

    # With typ forged to at+jwt it still fails: its issuer and audience are not ours.
    retyped = _assertion(forge, attacker_key, {**header, "typ": "at+jwt"})
    with pytest.raises(TokenError) as caught:
        verify_access_token(ring, retyped, issuer=ISSUER, audience=AUDIENCE, now=NOW)
    assert caught.value.reason == "invalid_issuer"


def test_client_assertion_error_is_a_token_error(clients: Clients) -> None:
    with pytest.raises(TokenError):
        _verify(clients, "garbage")

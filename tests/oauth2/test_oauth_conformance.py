"""Issue 8's OAuth faults, each as the minimal input a real client or a bug report sent.

RFC 6749 (sections 2.3, 3.1-3.3, 5.2), RFC 7009 section 2.1, RFC 7523 / draft-ietf-oauth-rfc7523bis
(audience), RFC 7662 (introspection ends at exp). Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures.jose import Forge
from tests.fixtures.oauth2 import (
    ASSERTION_TYPE,
    assertion,
    basic,
    claims_of,
    header_of,
    jwt_credential,
    new_agent,
    secret_credential,
    server_key,
    token,
    token_by_assertion,
)

ISSUER = "http://testserver"


def _is_oauth_error(r: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body: dict[str, Any] = r.json()
    assert body["error"] == error
    assert isinstance(body["error_description"], str)
    return body


@pytest.fixture
async def secret_client(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    agent = await new_agent(client, admin)
    return await secret_credential(client, admin, agent["id"])


# --- fault 12: RFC 6749 section 5.2 error bodies ----------------------------------------------


async def test_oauth_errors_are_application_json(
    client: httpx.AsyncClient, admin: dict[str, str], secret_client: dict[str, Any]
) -> None:
    auth = basic(secret_client["client_id"], secret_client["client_secret"])
    r = await client.post("/oauth/token", data={"grant_type": "password"}, headers=auth)
    _is_oauth_error(r, 400, "unsupported_grant_type")
    r = await client.post("/oauth/token", data={"grant_type": "client_credentials"})
    _is_oauth_error(r, 401, "invalid_client")
    r = await client.post("/oauth/revoke", data={"token_type_hint": "x"}, headers=auth)
    _is_oauth_error(r, 400, "invalid_request")
    r = await client.post("/oauth/introspect", data={"token_type_hint": "x"}, headers=admin)
    _is_oauth_error(r, 400, "invalid_request")


# --- fault 5: assertions valid for an hour (Authlib's default) --------------------------------


async def test_assertion_valid_for_one_hour_is_accepted_and_stays_single_use(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    agent = await new_agent(client, admin)
    cred, key = await jwt_credential(client, admin, agent["id"])
    now = int(time.time())
    signed = assertion(key, cred["client_id"], iat=now, exp=now + 3600)
    assert (await token_by_assertion(client, signed)).status_code == 200
    replay = _is_oauth_error(await token_by_assertion(client, signed), 401, "invalid_client")
    assert "jti" in replay["error_description"]
    too_far = assertion(key, cred["client_id"], iat=now, exp=now + 3700)
    body = _is_oauth_error(await token_by_assertion(client, too_far), 401, "invalid_client")
    assert "exp_too_far" in body["error_description"]
    assert "3600 s" in body["error_description"]


# --- fault 6: the issuer identifier is an audience --------------------------------------------


@pytest.mark.parametrize("aud", [ISSUER, f"{ISSUER}/oauth/token", [ISSUER]])
async def test_issuer_identifier_is_an_accepted_audience(
    client: httpx.AsyncClient, admin: dict[str, str], aud: Any
) -> None:
    agent = await new_agent(client, admin)
    cred, key = await jwt_credential(client, admin, agent["id"])
    r = await token_by_assertion(client, assertion(key, cred["client_id"], aud=aud))
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    for revoke_aud in (ISSUER, f"{ISSUER}/oauth/revoke"):
        r = await client.post(
            "/oauth/revoke",
            data={
                "token": access,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion(key, cred["client_id"], aud=revoke_aud),
            },
        )
        assert r.status_code == 200, r.text
    for wrong in (f"{ISSUER}/", f"{ISSUER}/oauth/introspect", "http://evil.example"):
        r = await token_by_assertion(client, assertion(key, cred["client_id"], aud=wrong))
        assert "invalid_audience" in _is_oauth_error(r, 401, "invalid_client")["error_description"]


# --- fault 7: scope syntax (RFC 6749 section 3.3) ----------------------------------------------


@pytest.mark.parametrize(
    "scope",
    [
        "decisions:create\taudit:write",
        "decisions:create\naudit:write",
        "decisions:create  audit:write",
        " decisions:create",
        "decisions:create ",
        "decisions:create\u00a0audit:write",
        "",
        '"decisions:create"',
    ],
)
async def test_scope_tokens_are_separated_by_single_spaces(
    client: httpx.AsyncClient, secret_client: dict[str, Any], scope: str
) -> None:
    auth = basic(secret_client["client_id"], secret_client["client_secret"])
    r = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "scope": scope}, headers=auth
    )
    _is_oauth_error(r, 400, "invalid_scope")
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "audit:write decisions:create"},
        headers=auth,
    )
    assert r.status_code == 200
    assert set(r.json()["scope"].split(" ")) == {"audit:write", "decisions:create"}


# --- fault 8: one client authentication per request -------------------------------------------


async def test_basic_credentials_with_another_client_id_are_refused(
    client: httpx.AsyncClient, admin: dict[str, str], secret_client: dict[str, Any]
) -> None:
    agent = await new_agent(client, admin, domain="claims")
    other = await secret_credential(client, admin, agent["id"])
    auth = basic(secret_client["client_id"], secret_client["client_secret"])
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": other["client_id"]},
        headers=auth,
    )
    _is_oauth_error(r, 400, "invalid_request")
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": secret_client["client_id"]},
        headers=auth,
    )
    assert r.status_code == 200


@pytest.mark.parametrize(
    "spelling",
    [str.upper, lambda s: "urn:uuid:" + s, lambda s: s.replace("-", ""), lambda s: f"{{{s}}}"],
)
async def test_client_ids_have_one_spelling(
    client: httpx.AsyncClient, secret_client: dict[str, Any], spelling: Any
) -> None:
    client_id = spelling(secret_client["client_id"])
    assert uuid.UUID(client_id) == uuid.UUID(secret_client["client_id"])
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(client_id, secret_client["client_secret"]),
    )
    _is_oauth_error(r, 401, "invalid_client")


# --- fault 9: the issuer's own answers end at exp ---------------------------------------------


async def test_expired_token_is_inactive_and_refused_without_leeway(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], secret_client: dict[str, Any]
) -> None:
    access = await token(client, secret_client)
    claims = claims_of(access)
    now = int(time.time())
    claims.update(iat=now - 60, exp=now - 3)  # expired 3 s ago, well within the 30 s leeway
    expired = Forge().signed(await server_key(app), header_of(access), claims)
    r = await client.post("/oauth/introspect", data={"token": expired}, headers=admin)
    assert r.status_code == 200
    assert r.json() == {"active": False}
    r = await client.get("/v1/agents/me", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401
    # The same token with its exp ahead is active: the refusal above is the expiry alone.
    claims.update(exp=now + 60)
    fresh = Forge().signed(await server_key(app), header_of(access), claims)
    r = await client.post("/oauth/introspect", data={"token": fresh}, headers=admin)
    assert r.json()["active"] is True


# --- fault 13: unknown parameters are ignored, repeated known ones refused --------------------


async def test_unknown_parameters_are_ignored_even_repeated(
    client: httpx.AsyncClient, secret_client: dict[str, Any]
) -> None:
    auth = basic(secret_client["client_id"], secret_client["client_secret"])
    form = {"Content-Type": "application/x-www-form-urlencoded", **auth}
    r = await client.post(
        "/oauth/token", content=b"grant_type=client_credentials&foo=1&foo=2", headers=form
    )
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    r = await client.post(
        "/oauth/token",
        content=b"grant_type=client_credentials&grant_type=client_credentials",
        headers=form,
    )
    _is_oauth_error(r, 400, "invalid_request")
    r = await client.post("/oauth/revoke", content=f"token={access}&foo=1&foo=2", headers=form)
    assert r.status_code == 200, r.text
    r = await client.post("/oauth/revoke", content=f"token={access}&token=x", headers=form)
    _is_oauth_error(r, 400, "invalid_request")

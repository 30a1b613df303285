"""Agent credentials end to end over HTTP: create, get tokens, use them, revoke them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from control_plane.crypto.keystore import rotate
from control_plane.oauth2.agent_auth import AgentAuthenticator
from control_plane.state import app_state
from tests.fixtures.factories import create_operator, create_version
from tests.fixtures.oauth2 import (
    assertion,
    basic,
    claims_of,
    header_of,
    jwt_credential,
    new_agent,
    secret_credential,
    token,
    token_by_assertion,
)


async def test_token_carries_rfc9068_claims_and_verifies_with_pyjwt(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    agent = await new_agent(client, admin, autonomy_level=2)
    version = await create_version(client, admin, agent["id"], "2.1.0")
    base = f"/v1/agents/{agent['id']}/versions/{version['id']}"
    await client.post(f"{base}/approve", headers=admin)
    await client.post(f"{base}/activate", headers=admin)
    cred = await secret_credential(client, admin, agent["id"])
    assert cred["client_secret"].startswith("acp_cs_")
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "decisions:create"},
        headers=basic(cred["client_id"], cred["client_secret"]),
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert body["scope"] == "decisions:create"
    access = body["access_token"]
    assert header_of(access)["typ"] == "at+jwt"

    # Another JWT library, given only the published JWKS, accepts the token.
    jwks = (await client.get("/.well-known/jwks.json")).json()
    assert all("d" not in k for k in jwks["keys"])
    key = jwt.PyJWKSet.from_dict(jwks)[header_of(access)["kid"]]
    claims = jwt.decode(
        access,
        key=key.key,
        algorithms=["EdDSA"],
        audience="agent-control-plane",
        issuer="http://testserver",
    )
    assert claims["sub"] == agent["id"]
    assert claims["client_id"] == cred["client_id"]
    assert claims["scope"] == "decisions:create"
    assert claims["domain"] == "payments"
    assert claims["autonomy_level"] == 2
    assert claims["version"] == "2.1.0"
    assert claims["version_id"] == version["id"]
    assert claims["exp"] - claims["iat"] == 600
    assert claims["jti"]

    me = await client.get("/v1/agents/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status_code == 200
    assert me.json()["id"] == agent["id"]


async def test_metadata_document(client: httpx.AsyncClient) -> None:
    meta = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert meta["issuer"] == "http://testserver"
    assert meta["token_endpoint"] == "http://testserver/oauth/token"
    assert meta["jwks_uri"] == "http://testserver/.well-known/jwks.json"
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "private_key_jwt",
    }


async def test_credentials_list_never_shows_secrets(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    agent = await new_agent(client, admin)
    cred = await secret_credential(client, admin, agent["id"])
    listing = await client.get(f"/v1/agents/{agent['id']}/credentials", headers=admin)
    assert listing.status_code == 200
    assert cred["client_secret"] not in listing.text
    assert 'client_secret"' not in listing.text
    assert "secret_hash" not in listing.text
    assert listing.json()["data"][0]["client_id"] == cred["client_id"]


async def test_scopes_are_a_subset(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    agent = await new_agent(client, admin)
    cred = await secret_credential(client, admin, agent["id"], scopes=["decisions:create"])
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "decisions:create audit:write"},
        headers=basic(cred["client_id"], cred["client_secret"]),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "password"},
        headers=basic(cred["client_id"], cred["client_secret"]),
    )
    assert r.json()["error"] == "unsupported_grant_type"


async def test_private_key_jwt(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    agent = await new_agent(client, admin)
    cred, key = await jwt_credential(client, admin, agent["id"])
    assert "client_secret" not in cred or cred["client_secret"] is None
    r = await token_by_assertion(client, assertion(key, cred["client_id"]))
    assert r.status_code == 200, r.text
    assert claims_of(r.json()["access_token"])["client_id"] == cred["client_id"]


async def test_credential_bound_to_a_version(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    agent = await new_agent(client, admin)
    v1 = await create_version(client, admin, agent["id"], "1.0.0")
    v2 = await create_version(client, admin, agent["id"], "2.0.0")
    base = f"/v1/agents/{agent['id']}/versions"
    r = await client.post(
        f"/v1/agents/{agent['id']}/credentials",
        json={"scopes": ["decisions:create"], "version": "1.0.0"},
        headers=admin,
    )
    assert r.status_code == 422  # registered, not approved
    for v in (v1, v2):
        await client.post(f"{base}/{v['id']}/approve", headers=admin)
    cred = await secret_credential(client, admin, agent["id"], version="1.0.0")
    h = basic(cred["client_id"], cred["client_secret"])
    form = {"grant_type": "client_credentials"}
    assert (await client.post("/oauth/token", data=form, headers=h)).status_code == 401
    await client.post(f"{base}/{v1['id']}/activate", headers=admin)
    access = await token(client, cred)
    assert claims_of(access)["version"] == "1.0.0"
    await client.post(f"{base}/{v2['id']}/activate", headers=admin)
    # The bound version stepped back: no new tokens, and the issued one stops working.
    assert (await client.post("/oauth/token", data=form, headers=h)).status_code == 401
    me = await client.get("/v1/agents/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status_code == 401


async def test_suspension_and_revocation_stop_tokens_at_once(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    agent = await new_agent(client, admin)
    cred = await secret_credential(client, admin, agent["id"])
    access = await token(client, cred)
    me = {"Authorization": f"Bearer {access}"}
    assert (await client.get("/v1/agents/me", headers=me)).status_code == 200
    await client.post(f"/v1/agents/{agent['id']}/suspend", headers=admin)
    r = await client.get("/v1/agents/me", headers=me)
    assert r.status_code == 401
    assert "not active" in r.json()["detail"]
    assert (
        await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers=basic(cred["client_id"], cred["client_secret"]),
        )
    ).status_code == 401
    await client.post(f"/v1/agents/{agent['id']}/resume", headers=admin)
    assert (await client.get("/v1/agents/me", headers=me)).status_code == 200

    # RFC 7009 revocation by the client itself.
    h = basic(cred["client_id"], cred["client_secret"])
    r = await client.post("/oauth/revoke", data={"token": access}, headers=h)
    assert r.status_code == 200
    assert (await client.get("/v1/agents/me", headers=me)).status_code == 401
    # Unknown or garbage tokens: still 200.
    assert (
        await client.post("/oauth/revoke", data={"token": "x.y.z"}, headers=h)
    ).status_code == 200

    # Revoking the credential stops every token it issued.
    fresh = await token(client, cred)
    revoked = await client.post(
        f"/v1/agents/{agent['id']}/credentials/{cred['client_id']}/revoke", headers=admin
    )
    assert revoked.status_code == 200
    r = await client.get("/v1/agents/me", headers={"Authorization": f"Bearer {fresh}"})
    assert r.status_code == 401
    assert "revoked" in r.json()["detail"]


async def test_another_clients_token_is_not_revocable(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    agent = await new_agent(client, admin)
    a = await secret_credential(client, admin, agent["id"])
    b = await secret_credential(client, admin, agent["id"])
    access = await token(client, a)
    r = await client.post(
        "/oauth/revoke",
        data={"token": access},
        headers=basic(b["client_id"], b["client_secret"]),
    )
    # RFC 7009 section 2.1: refused, and the client is told (issue 8 fault 10).
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"] == "unauthorized_client"
    me = await client.get("/v1/agents/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status_code == 200


async def test_introspection(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    agent = await new_agent(client, admin)
    cred = await secret_credential(client, admin, agent["id"])
    access = await token(client, cred)
    r = await client.post("/oauth/introspect", data={"token": access}, headers=admin)
    body = r.json()
    assert body["active"] is True
    assert body["sub"] == agent["id"]
    assert body["client_id"] == cred["client_id"]
    await client.post("/v1/domains", json={"name": "claims"}, headers=admin)
    other_domain_admin = await create_operator(client, admin, "domain_admin", ["claims"])
    r = await client.post("/oauth/introspect", data={"token": access}, headers=other_domain_admin)
    assert r.json() == {"active": False}
    for bad in ("garbage", access[:-4] + "AAAA"):
        r = await client.post("/oauth/introspect", data={"token": bad}, headers=admin)
        assert r.json() == {"active": False}
    r = await client.post("/oauth/introspect", data={"token": access})
    assert r.status_code == 401
    assert "www-authenticate" in r.headers
    await client.post(f"/v1/agents/{agent['id']}/suspend", headers=admin)
    r = await client.post("/oauth/introspect", data={"token": access}, headers=admin)
    assert r.json() == {"active": False}


async def test_rotation_keeps_old_tokens_valid(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    agent = await new_agent(client, admin)
    cred = await secret_credential(client, admin, agent["id"])
    before = await token(client, cred)
    old_kid = header_of(before)["kid"]
    new_kid = await rotate(app_state(app).database.sessionmaker, app_state(app).settings)
    assert new_kid != old_kid
    await app_state(app).keystore.reload()
    after = await token(client, cred)
    assert header_of(after)["kid"] == new_kid
    kids = {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
    assert kids == {old_kid, new_kid}
    for access in (before, after):
        r = await client.get("/v1/agents/me", headers={"Authorization": f"Bearer {access}"})
        assert r.status_code == 200


async def test_state_cache_is_bounded_by_its_ttl(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """With a state cache (auth_state_ttl_seconds > 0) a suspension lands within the TTL."""
    state = app_state(app)
    state.agent_authenticator = AgentAuthenticator(
        state.keystore, state.settings.model_copy(update={"auth_state_ttl_seconds": 0.5})
    )
    agent = await new_agent(client, admin)
    cred = await secret_credential(client, admin, agent["id"])
    me = {"Authorization": f"Bearer {await token(client, cred)}"}
    assert (await client.get("/v1/agents/me", headers=me)).status_code == 200
    await client.post(f"/v1/agents/{agent['id']}/suspend", headers=admin)
    start = time.monotonic()
    while (await client.get("/v1/agents/me", headers=me)).status_code == 200:
        assert time.monotonic() - start < 1.0, "suspension not enforced within 1 s"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    "form",
    [
        {"grant_type": "client_credentials", "client_secret": "x", "client_id": "y"},
        {"grant_type": "client_credentials"},
        {"grant_type": "client_credentials", "client_assertion": "a.b.c"},
    ],
)
async def test_token_endpoint_client_auth_errors(
    client: httpx.AsyncClient, form: dict[str, str]
) -> None:
    r = await client.post("/oauth/token", data=form)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")
    assert r.headers["content-type"] == "application/json"


async def test_token_endpoint_request_errors(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    agent = await new_agent(client, admin)
    cred = await secret_credential(client, admin, agent["id"])
    h = basic(cred["client_id"], cred["client_secret"])
    r = await client.post("/oauth/token", json={"grant_type": "client_credentials"}, headers=h)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    r = await client.post(
        "/oauth/token",
        content=b"grant_type=client_credentials&grant_type=client_credentials",
        headers=h | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400
    r = await client.post(
        "/oauth/token",
        content=b"grant_type=\xff\xfe",
        headers=h | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400
    r = await client.post("/oauth/token", data={}, headers=h)
    assert r.json()["error"] == "invalid_request"


async def test_credential_create_validation(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    agent = await new_agent(client, admin)
    url = f"/v1/agents/{agent['id']}/credentials"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"scopes": []}, "/body/scopes"),
        ({"scopes": ["root"]}, "/body/scopes/0"),
        (
            {"scopes": ["decisions:create"], "expires_at": "2001-01-01T00:00:00Z"},
            "/body/expires_at",
        ),
        (
            {"scopes": ["decisions:create"], "public_jwk": {"kty": "oct", "k": "AAAA"}},
            "/body/public_jwk",
        ),
        ({"scopes": ["decisions:create"], "version": "9.9.9"}, "/body/version"),
        ({"scopes": ["decisions:create"], "secret": "mine"}, "/body/secret"),
    ]
    for body, pointer in cases:
        r = await client.post(url, json=body, headers=admin)
        assert r.status_code == 422, (body, r.text)
        assert pointer in [e["pointer"] for e in r.json()["errors"]], (body, r.json())
    private = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    }
    r = await client.post(
        url, json={"scopes": ["decisions:create"], "public_jwk": private}, headers=admin
    )
    assert r.status_code == 422
    assert private["d"] not in r.text
    assert (await client.get(url, headers=admin)).json()["data"] == []


async def test_credentials_follow_operator_scope(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    agent = await new_agent(client, admin, domain="payments")
    await client.post("/v1/domains", json={"name": "claims"}, headers=admin)
    claims_admin = await create_operator(client, admin, "domain_admin", ["claims"])
    auditor = await create_operator(client, admin, "auditor")
    url = f"/v1/agents/{agent['id']}/credentials"
    body = {"scopes": ["decisions:create"]}
    assert (await client.post(url, json=body, headers=claims_admin)).status_code == 404
    assert (await client.get(url, headers=claims_admin)).status_code == 404
    assert (await client.post(url, json=body, headers=auditor)).status_code == 403
    assert (await client.get(url, headers=auditor)).status_code == 200


async def test_agent_token_is_not_an_operator_token(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    agent = await new_agent(client, admin)
    access = await token(client, await secret_credential(client, admin, agent["id"]))
    r = await client.get("/v1/agents", headers={"Authorization": f"Bearer {access}"})
    assert r.status_code == 401
    r = await client.get("/v1/agents/me", headers=admin)
    assert r.status_code == 401


async def test_key_refresh_inside_write_requests(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """The key ring reloads while a write request holds the database (SQLite's single writer):
    that used to deadlock the request against itself until the busy timeout (a 500)."""
    from tests.fixtures.decisions import REFUND, decider

    keystore = app_state(app).keystore
    keystore._settings = keystore._settings.model_copy(update={"key_refresh_seconds": 0.01})
    me = await decider(client, admin)
    cred = await secret_credential(client, admin, me["agent"]["id"])
    for _ in range(5):
        await asyncio.sleep(0.02)  # past the refresh interval: the next ring() reloads
        assert (
            await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
        ).status_code == 200
        await asyncio.sleep(0.02)
        await token(client, cred)


async def test_expiry_is_an_rfc3339_date_time(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """RFC 3339 needs the offset: a naive time or a number is refused (issue 8, fault 17's class),
    as the document's format: date-time says."""
    agent = await new_agent(client, admin)
    beyond = "9999-12-31T23:59:59-23:59"  # valid RFC 3339, no UTC equivalent
    for naive in ("2999-01-01T00:00:00", 32503680000, "2999-01-01", beyond):
        r = await client.post(
            f"/v1/agents/{agent['id']}/credentials",
            json={"scopes": ["decisions:create"], "expires_at": naive},
            headers=admin,
        )
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["pointer"] == "/body/expires_at"
    cred = await secret_credential(
        client, admin, agent["id"], expires_at="2999-01-01T02:00:00+02:00"
    )
    assert cred["expires_at"] == "2999-01-01T00:00:00Z"


async def test_token_never_outlives_its_credential(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    agent = await new_agent(client, admin)
    soon = time.time() + 120
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(soon))
    cred = await secret_credential(client, admin, agent["id"], expires_at=expires)
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(cred["client_id"], cred["client_secret"]),
    )
    assert r.status_code == 200
    assert r.json()["expires_in"] <= 120
    assert claims_of(r.json()["access_token"])["exp"] <= int(soon) + 1

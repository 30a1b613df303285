"""Helpers for the HTTP-level credential tests: an agent with a credential, tokens, keys."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi import FastAPI

from control_plane.crypto.signing import SigningKey, generate_signing_key
from control_plane.state import app_state
from tests.credentials.support import Forge, b64
from tests.factories import create_agent, create_domain

TOKEN_URL = "http://testserver/oauth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return data


def header_of(token: str) -> dict[str, Any]:
    head = token.split(".")[0]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return data


async def server_key(app: FastAPI) -> SigningKey:
    ring = await app_state(app).keystore.reload()
    key: SigningKey = ring.signing_key()
    return key


async def new_agent(
    client: httpx.AsyncClient, admin: dict[str, str], domain: str = "payments", **fields: Any
) -> dict[str, Any]:
    await create_domain(client, admin, domain)
    return await create_agent(client, admin, domain, **fields)


async def secret_credential(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    agent_id: str,
    scopes: list[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    r = await client.post(
        f"/v1/agents/{agent_id}/credentials",
        json={"scopes": scopes or ["decisions:create", "audit:write"], **fields},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def jwt_credential(
    client: httpx.AsyncClient, admin: dict[str, str], agent_id: str
) -> tuple[dict[str, Any], SigningKey]:
    key = generate_signing_key("EdDSA")
    r = await client.post(
        f"/v1/agents/{agent_id}/credentials",
        json={"scopes": ["decisions:create"], "public_jwk": key.public_jwk()},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return r.json(), key


async def token(client: httpx.AsyncClient, credential: dict[str, Any], **form: str) -> str:
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", **form},
        headers=basic(credential["client_id"], credential["client_secret"]),
    )
    assert r.status_code == 200, r.text
    value: str = r.json()["access_token"]
    return value


def assertion(
    key: SigningKey,
    client_id: str,
    *,
    forge: Forge | None = None,
    header: dict[str, Any] | None = None,
    **overrides: Any,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "iat": now,
        "exp": now + 120,
        "jti": b64(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw())[:22],
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return (forge or Forge()).signed(key, header or {"alg": key.alg, "typ": "JWT"}, claims)


async def token_by_assertion(
    client: httpx.AsyncClient, client_assertion: str, **form: str
) -> httpx.Response:
    return await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion,
            **form,
        },
    )

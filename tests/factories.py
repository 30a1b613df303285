"""Builders for the objects tests need, all created through the public HTTP API."""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import httpx

_seq = itertools.count(1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_domain(client: httpx.AsyncClient, admin: dict[str, str], name: str) -> None:
    r = await client.post("/v1/domains", json={"name": name}, headers=admin)
    assert r.status_code in (201, 409), r.text


async def create_agent(
    client: httpx.AsyncClient, headers: dict[str, str], domain: str, **fields: Any
) -> dict[str, Any]:
    body = {"name": f"agent-{next(_seq)}", "domain": domain, "owner": "team@example.com"}
    body.update(fields)
    r = await client.post("/v1/agents", json=body, headers=headers)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def create_operator(
    client: httpx.AsyncClient, admin: dict[str, str], role: str, domains: list[str] | None = None
) -> dict[str, str]:
    """Create an operator over the API and return its Authorization header."""
    r = await client.post(
        "/v1/operators",
        json={"name": f"{role}-{next(_seq)}", "role": role, "domains": domains or []},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return bearer(r.json()["token"])


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


async def create_version(
    client: httpx.AsyncClient, headers: dict[str, str], agent_id: str, version: str = "1.0.0"
) -> dict[str, Any]:
    r = await client.post(
        f"/v1/agents/{agent_id}/versions",
        json={
            "version": version,
            "model_name": "gpt-test",
            "model_version": "2026-01",
            "artifact_digest": digest(version),
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data

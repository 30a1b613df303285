"""Plain-HTTP helpers for conformance tests: the objects a client needs before it can act."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

_seq = itertools.count(1)


def new_agent(url: str, admin: dict[str, str], domain: str = "payments") -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/domains", json={"name": domain}, headers=admin)
    assert r.status_code in (201, 409), r.text
    r = httpx.post(
        f"{url}/v1/agents",
        json={"name": f"agent-{next(_seq)}", "domain": domain, "owner": "o@example.com"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    agent: dict[str, Any] = r.json()
    return agent


def new_credential(url: str, admin: dict[str, str], agent_id: str, **fields: Any) -> dict[str, Any]:
    body = {"scopes": ["decisions:create"], **fields}
    r = httpx.post(f"{url}/v1/agents/{agent_id}/credentials", json=body, headers=admin)
    assert r.status_code == 201, r.text
    credential: dict[str, Any] = r.json()
    return credential


REFUND = {
    "action": "payments.refund",
    "resource": {"type": "payment", "id": "p-1", "amount": 20},
    "context": {},
}


def decide(url: str, access_token: str) -> dict[str, Any]:
    r = httpx.post(
        f"{url}/v1/decisions",
        json=REFUND,
        headers={"Authorization": f"Bearer {access_token}"},
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result

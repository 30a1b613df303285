"""An agent ready to ask for decisions: active version, credential, token."""

from __future__ import annotations

from typing import Any

import httpx

from tests.credentials.api_support import basic
from tests.factories import create_domain, create_version


async def decider(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    *,
    name: str = "refund-bot",
    domain: str = "payments",
    autonomy_level: int = 1,
    scopes: list[str] | None = None,
    create_the_domain: bool = True,
) -> dict[str, Any]:
    """Returns {"agent", "headers"} for an agent with an active version and a token.

    ``admin`` is the operator doing the registering (a domain_admin works for its domains,
    with ``create_the_domain=False``: only platform admins create domains)."""
    if create_the_domain:
        await create_domain(client, admin, domain)
    r = await client.post(
        "/v1/agents",
        json={"name": name, "domain": domain, "owner": "o", "autonomy_level": autonomy_level},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    agent = r.json()
    version = await create_version(client, admin, agent["id"], "1.0.0")
    for step in ("approve", "activate"):
        await client.post(
            f"/v1/agents/{agent['id']}/versions/{version['id']}/{step}", headers=admin
        )
    cred = (
        await client.post(
            f"/v1/agents/{agent['id']}/credentials",
            json={"scopes": scopes or ["decisions:create"]},
            headers=admin,
        )
    ).json()
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(cred["client_id"], cred["client_secret"]),
    )
    assert r.status_code == 200, r.text
    return {"agent": agent, "headers": {"Authorization": f"Bearer {r.json()['access_token']}"}}


REFUND = {
    "action": "payments.refund",
    "resource": {"type": "order", "id": "o-1", "amount": 50, "region": "eu-west-1"},
}

"""What the shadow and canary tests share: a second revision, and the calls around it."""

from __future__ import annotations

from typing import Any

import httpx

BUNDLE = "/v1/policies/default"


def deny_all() -> dict[str, Any]:
    """A valid policy under the shipped decision path that denies everything (``maintenance``)."""
    return {
        "modules": {
            "agents/authz.rego": (
                "package agents.authz\n\n"
                'decision := {"effect": "deny", "allow": false, '
                '"reasons": ["maintenance"], "obligations": []}\n'
            )
        },
        "data": {},
    }


async def push_deny_all(client: httpx.AsyncClient, admin: dict[str, str]) -> int:
    r = await client.post(f"{BUNDLE}/revisions", json=deny_all(), headers=admin)
    assert r.status_code == 201, r.text
    revision: int = r.json()["revision"]
    return revision

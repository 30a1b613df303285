"""What the console tests share: sign-in over HTTP, a pending approval made through the API,
and the scan of pages for values that must never appear in them."""

from __future__ import annotations

import copy
import re
from typing import Any

import httpx

from tests.fixtures.decisions import REFUND, decider

#: A value the shipped policy obliges to be redacted (resource.card_number of payments.refund).
MARKER = "CARD-4111-1111-MARKER-9d1e"
BIG = copy.deepcopy(REFUND)
BIG["resource"]["amount"] = 500  # above the approval threshold: require_approval
BIG["resource"]["card_number"] = MARKER
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
#: Things shaped like secrets: operator tokens, JWTs (access tokens). Client secrets, session ids
#: and tokens the tests made are checked by value.
SECRET_SHAPES = re.compile(r"acp_op_[A-Za-z0-9_\-]{8,}|eyJ[A-Za-z0-9_\-]{10,}\.")


def forbidden_in_pages(*values: str) -> list[str]:
    return [MARKER, *values]


def assert_clean(html: str, forbidden: list[str], where: str) -> None:
    """No secret, token or raw redacted value in a page."""
    for value in forbidden:
        assert value not in html, f"{where} shows a value it must not"
    found = SECRET_SHAPES.search(html)
    assert found is None, f"{where} shows something shaped like a secret: {found.group(0)[:12]}"


async def pending_approval(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> tuple[dict[str, Any], str]:
    """An agent of domain 'payments' whose refund of 500 waits for approval: (agent, id)."""
    me = await decider(client, admin)
    r = await client.post("/v1/decisions", json=BIG, headers=me["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["effect"] == "require_approval"
    return me, r.json()["approval_id"]


async def operator(
    client: httpx.AsyncClient, admin: dict[str, str], role: str, name: str, domains: list[str]
) -> str:
    r = await client.post(
        "/v1/operators", json={"name": name, "role": role, "domains": domains}, headers=admin
    )
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


async def sign_in(client: httpx.AsyncClient, token: str) -> str:
    """Sign the client in; returns the session's CSRF token (read off a page)."""
    r = await client.get("/console/sign-in")
    assert r.status_code == 200
    pre = client.cookies["acp_console_signin"]
    r = await client.post(
        "/console/sign-in", data={"csrf_token": pre, "token": token, "next": "/console/approvals"}
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/console/approvals"
    page = await client.get("/console/approvals")
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)

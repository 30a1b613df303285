"""Roles and domain scope on every registry route."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.factories import create_agent, create_domain, create_operator, create_version


@pytest.fixture
async def world(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    await create_domain(client, admin, "alpha")
    await create_domain(client, admin, "beta")
    a = await create_agent(client, admin, "alpha")
    b = await create_agent(client, admin, "beta")
    vb = await create_version(client, admin, b["id"])
    return {
        "a": a,
        "b": b,
        "vb": vb,
        "alpha_admin": await create_operator(client, admin, "domain_admin", ["alpha"]),
        "auditor": await create_operator(client, admin, "auditor"),
        "approver": await create_operator(client, admin, "approver"),
    }


async def test_domain_admin_cannot_see_or_touch_other_domain(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    h = world["alpha_admin"]
    b = world["b"]
    vb = world["vb"]
    calls = [
        ("GET", f"/v1/agents/{b['id']}", None),
        ("PATCH", f"/v1/agents/{b['id']}", {"owner": "x"}),
        ("POST", f"/v1/agents/{b['id']}/suspend", None),
        ("POST", f"/v1/agents/{b['id']}/retire", None),
        ("GET", f"/v1/agents/{b['id']}/versions", None),
        ("POST", f"/v1/agents/{b['id']}/versions/{vb['id']}/approve", None),
        ("GET", "/v1/domains/beta", None),
    ]
    for method, url, body in calls:
        r = await client.request(method, url, json=body, headers=h | {"If-Match": "*"})
        assert r.status_code == 404, (method, url, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    listing = (await client.get("/v1/agents", headers=h)).json()["data"]
    assert [x["id"] for x in listing] == [world["a"]["id"]]
    assert (await client.get("/v1/agents", params={"domain": "beta"}, headers=h)).json()[
        "data"
    ] == []
    assert [d["name"] for d in (await client.get("/v1/domains", headers=h)).json()["data"]] == [
        "alpha"
    ]
    # Creating in a domain outside the scope looks exactly like an unknown domain.
    r = await client.post(
        "/v1/agents", json={"name": "x", "domain": "beta", "owner": "o"}, headers=h
    )
    assert r.status_code == 422
    # Its own domain works, and nothing in beta changed.
    assert (
        await client.post(f"/v1/agents/{world['a']['id']}/suspend", headers=h)
    ).status_code == 200


async def test_domain_admin_cannot_manage_domains_or_operators(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    h = world["alpha_admin"]
    assert (await client.post("/v1/domains", json={"name": "x"}, headers=h)).status_code == 403
    assert (await client.get("/v1/operators", headers=h)).status_code == 403
    r = await client.post("/v1/operators", json={"name": "n", "role": "platform_admin"}, headers=h)
    assert r.status_code == 403


async def test_auditor_reads_everything_and_writes_nothing(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    h = world["auditor"]
    a, b = world["a"], world["b"]
    assert len((await client.get("/v1/agents", headers=h)).json()["data"]) == 2
    assert (await client.get(f"/v1/agents/{b['id']}", headers=h)).status_code == 200
    writes = [
        ("POST", "/v1/agents", {"name": "x", "domain": "alpha", "owner": "o"}),
        ("PATCH", f"/v1/agents/{a['id']}", {"owner": "x"}),
        ("POST", f"/v1/agents/{a['id']}/suspend", None),
        ("POST", f"/v1/agents/{b['id']}/versions/{world['vb']['id']}/approve", None),
        ("POST", "/v1/domains", {"name": "gamma"}),
    ]
    for method, url, body in writes:
        r = await client.request(method, url, json=body, headers=h | {"If-Match": "*"})
        assert r.status_code == 403, (method, url, r.text)
        assert r.json()["code"] == "forbidden"


async def test_approver_has_no_registry_access(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    assert (await client.get("/v1/agents", headers=world["approver"])).status_code == 403


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer acp_op_not-a-real-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer " + "x" * 5000},
    ],
)
async def test_missing_or_bad_token_is_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await client.get("/v1/agents", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.headers["content-type"] == "application/problem+json"


async def test_revoked_operator_is_401(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.post("/v1/operators", json={"name": "temp", "role": "auditor"}, headers=admin)
    created = r.json()
    assert r.headers["cache-control"] == "no-store"
    h = {"Authorization": f"Bearer {created['token']}"}
    assert (await client.get("/v1/agents", headers=h)).status_code == 200
    listed = (await client.get("/v1/operators", headers=admin)).json()["data"]
    assert all("token" not in o for o in listed)
    assert (
        await client.post(f"/v1/operators/{created['id']}/revoke", headers=admin)
    ).status_code == 200
    r = await client.get("/v1/agents", headers=h)
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]

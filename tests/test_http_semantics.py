"""Issue 8's HTTP faults 14-17 and 20: what a client or a proxy sees at the protocol level."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.factories import create_agent, create_domain


@pytest.mark.parametrize("path", ["/oauth/token/", "/v1/domains/", "/v1/agents/"])
async def test_no_redirect_is_built_from_the_host_header(
    client: httpx.AsyncClient, path: str
) -> None:
    r = await client.post(path, headers={"Host": "attacker.example"}, data={"a": "b"})
    assert r.status_code == 404
    assert "location" not in r.headers
    assert "attacker.example" not in r.text


@pytest.mark.parametrize(
    "path", ["/.well-known/jwks.json", "/.well-known/oauth-authorization-server", "/healthz"]
)
async def test_head_works_wherever_get_does(client: httpx.AsyncClient, path: str) -> None:
    got = await client.get(path)
    head = await client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == got.headers["content-length"]
    assert head.headers.get("cache-control") == got.headers.get("cache-control")


async def test_head_on_an_authenticated_resource(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await create_domain(client, admin, "payments")
    agent: dict[str, Any] = await create_agent(client, admin, "payments")
    got = await client.get(f"/v1/agents/{agent['id']}", headers=admin)
    head = await client.head(f"/v1/agents/{agent['id']}", headers=admin)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == got.headers["etag"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/v1/domains", "GET, HEAD, POST"),
        ("DELETE", "/v1/domains", "GET, HEAD, POST"),
        ("PATCH", "/v1/agents/me", "GET, HEAD"),
        ("DELETE", "/v1/agents/me", "GET, HEAD"),
        ("POST", "/v1/agents/me", "GET, HEAD"),
        ("DELETE", "/v1/agents/0190a0d1-0000-7000-8000-000000000000", "GET, HEAD, PATCH"),
        ("GET", "/oauth/token", "POST"),
        ("PUT", "/.well-known/jwks.json", "GET, HEAD"),
    ],
)
async def test_405_names_every_method_of_the_path(
    client: httpx.AsyncClient, admin: dict[str, str], method: str, path: str, allow: str
) -> None:
    r = await client.request(method, path, headers=admin)
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "value",
    ["0.5", "0", "1700000000", "2026-01-31", "2026-01-31T12:00:00", "2026-13-01T00:00:00Z", "x"],
)
async def test_since_and_until_are_rfc3339_date_times_only(
    client: httpx.AsyncClient, admin: dict[str, str], value: str
) -> None:
    for name in ("since", "until"):
        r = await client.get("/v1/decisions", params={name: value}, headers=admin)
        assert r.status_code == 422, (name, value, r.text)
        assert r.json()["errors"][0]["pointer"] == f"/query/{name}"
    for good in ("2026-01-31T12:00:00Z", "2026-01-31T12:00:00.5+02:00"):
        r = await client.get("/v1/decisions", params={"until": good}, headers=admin)
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("value", ["x", "3", 'W/"1', '"1" "2"', '"a b"', ", ,"])
async def test_if_match_that_is_not_an_entity_tag_is_400(
    client: httpx.AsyncClient, admin: dict[str, str], value: str
) -> None:
    await create_domain(client, admin, "payments")
    agent = await create_agent(client, admin, "payments")
    r = await client.patch(
        f"/v1/agents/{agent['id']}",
        json={"description": "x"},
        headers={**admin, "If-Match": value},
    )
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request"
    r = await client.post(f"/v1/agents/{agent['id']}/suspend", headers={**admin, "If-Match": value})
    assert r.status_code == 400, r.text
    # A well-formed tag that does not match is still 412.
    r = await client.patch(
        f"/v1/agents/{agent['id']}",
        json={"description": "x"},
        headers={**admin, "If-Match": '"999"'},
    )
    assert r.status_code == 412

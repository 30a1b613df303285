"""The registry as platform teams use it: domains, agents, lifecycles, versions, listing."""

from __future__ import annotations

import httpx

from tests.fixtures.factories import create_agent, create_domain, create_version, digest


async def test_domain_create_get_list(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.post("/v1/domains", json={"name": "payments"}, headers=admin)
    assert r.status_code == 201
    assert r.headers["location"] == "/v1/domains/payments"
    assert (await client.get("/v1/domains/payments", headers=admin)).json()["name"] == "payments"
    again = await client.post("/v1/domains", json={"name": "payments"}, headers=admin)
    assert again.status_code == 409
    assert again.json()["code"] == "already_exists"
    for name in ("claims", "billing"):
        await create_domain(client, admin, name)
    page = (await client.get("/v1/domains", params={"limit": 2}, headers=admin)).json()
    assert [d["name"] for d in page["data"]] == ["billing", "claims"]
    assert page["has_more"] is True
    rest = await client.get("/v1/domains", params={"after": page["next_after"]}, headers=admin)
    assert [d["name"] for d in rest.json()["data"]] == ["payments"]
    assert (await client.get("/v1/domains/nope", headers=admin)).status_code == 404


async def test_agent_create_and_get(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await create_domain(client, admin, "payments")
    r = await client.post(
        "/v1/agents",
        json={
            "name": "refund-bot",
            "domain": "payments",
            "owner": "payments-team@example.com",
            "description": "Issues refunds under 100 EUR",
            "autonomy_level": 1,
            "labels": {"tier": "gold", "team": "core"},
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    agent = r.json()
    assert agent["status"] == "active"
    assert r.headers["etag"] == '"1"'
    assert r.headers["location"] == f"/v1/agents/{agent['id']}"
    got = await client.get(f"/v1/agents/{agent['id']}", headers=admin)
    assert got.json() == agent
    assert got.headers["etag"] == '"1"'
    dup = await client.post(
        "/v1/agents",
        json={"name": "refund-bot", "domain": "payments", "owner": "x"},
        headers=admin,
    )
    assert dup.status_code == 409
    # The same name in another domain is a different agent.
    await create_domain(client, admin, "claims")
    other = await client.post(
        "/v1/agents", json={"name": "refund-bot", "domain": "claims", "owner": "x"}, headers=admin
    )
    assert other.status_code == 201


async def test_agent_in_unknown_domain_is_422(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.post(
        "/v1/agents", json={"name": "a", "domain": "ghost", "owner": "x"}, headers=admin
    )
    assert r.status_code == 422
    assert r.json()["errors"] == [{"pointer": "/body/domain", "detail": "unknown domain"}]


async def test_list_filters_and_cursor(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await create_domain(client, admin, "payments")
    await create_domain(client, admin, "claims")
    made = [
        await create_agent(client, admin, "payments", labels={"tier": "gold"}),
        await create_agent(client, admin, "payments", labels={"tier": "silver"}),
        await create_agent(client, admin, "claims", labels={"tier": "gold"}),
        await create_agent(client, admin, "claims"),
    ]
    await client.post(f"/v1/agents/{made[1]['id']}/suspend", headers=admin)

    async def ids(**params: object) -> list[str]:
        r = await client.get("/v1/agents", params=params, headers=admin)
        assert r.status_code == 200, r.text
        return [a["id"] for a in r.json()["data"]]

    assert await ids() == [a["id"] for a in made]
    assert await ids(domain="claims") == [made[2]["id"], made[3]["id"]]
    assert await ids(status="suspended") == [made[1]["id"]]
    assert await ids(label="tier=gold") == [made[0]["id"], made[2]["id"]]
    assert await ids(label=["tier=gold"], domain="payments") == [made[0]["id"]]
    assert await ids(label="tier=bronze") == []

    seen: list[str] = []
    after = None
    while True:
        params = {"limit": 3} | ({"after": after} if after else {})
        page = (await client.get("/v1/agents", params=params, headers=admin)).json()
        seen += [a["id"] for a in page["data"]]
        if not page["has_more"]:
            assert page["next_after"] is None
            break
        after = page["next_after"]
    assert seen == [a["id"] for a in made]


async def test_update_requires_and_checks_etag(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await create_domain(client, admin, "payments")
    agent = await create_agent(client, admin, "payments")
    url = f"/v1/agents/{agent['id']}"
    missing = await client.patch(url, json={"owner": "new"}, headers=admin)
    assert missing.status_code == 428
    stale = await client.patch(url, json={"owner": "new"}, headers=admin | {"If-Match": '"7"'})
    assert stale.status_code == 412
    weak = await client.patch(url, json={"owner": "new"}, headers=admin | {"If-Match": 'W/"1"'})
    assert weak.status_code == 412
    ok = await client.patch(
        url, json={"owner": "new", "autonomy_level": 2}, headers=admin | {"If-Match": '"1"'}
    )
    assert ok.status_code == 200, ok.text
    assert ok.headers["etag"] == '"2"'
    assert ok.json()["owner"] == "new"
    assert ok.json()["autonomy_level"] == 2
    assert ok.json()["name"] == agent["name"]
    # The old ETag no longer matches.
    again = await client.patch(url, json={"owner": "x"}, headers=admin | {"If-Match": '"1"'})
    assert again.status_code == 412
    assert (await client.get(url, headers=admin)).json()["owner"] == "new"
    null = await client.patch(url, json={"owner": None}, headers=admin | {"If-Match": '"2"'})
    assert null.status_code == 422


async def test_lifecycle(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await create_domain(client, admin, "payments")
    agent = await create_agent(client, admin, "payments")
    base = f"/v1/agents/{agent['id']}"
    assert (await client.post(f"{base}/resume", headers=admin)).status_code == 409
    suspended = await client.post(f"{base}/suspend", headers=admin)
    assert suspended.json()["status"] == "suspended"
    assert suspended.headers["etag"] == '"2"'
    assert (await client.post(f"{base}/suspend", headers=admin)).status_code == 409
    assert (await client.post(f"{base}/resume", headers=admin)).json()["status"] == "active"
    stale = await client.post(f"{base}/retire", headers=admin | {"If-Match": '"1"'})
    assert stale.status_code == 412
    assert (await client.post(f"{base}/retire", headers=admin)).json()["status"] == "retired"
    for action in ("suspend", "resume", "retire"):
        r = await client.post(f"{base}/{action}", headers=admin)
        assert r.status_code == 409
        assert r.json()["code"] == "invalid_state_transition"
    r = await client.patch(base, json={"owner": "x"}, headers=admin | {"If-Match": "*"})
    assert r.status_code == 409


async def test_versions_lifecycle(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await create_domain(client, admin, "payments")
    agent = await create_agent(client, admin, "payments")
    base = f"/v1/agents/{agent['id']}/versions"
    v1 = await create_version(client, admin, agent["id"], "1.0.0")
    v2 = await create_version(client, admin, agent["id"], "1.1.0-rc.1+build.5")
    assert v1["state"] == "registered"
    dup = await client.post(
        base,
        json={
            "version": "1.0.0",
            "model_name": "m",
            "model_version": "1",
            "artifact_digest": digest("x"),
        },
        headers=admin,
    )
    assert dup.status_code == 409

    # Only an approved version can be activated.
    r = await client.post(f"{base}/{v1['id']}/activate", headers=admin)
    assert r.status_code == 409
    assert "approved" in r.json()["detail"]
    approved = (await client.post(f"{base}/{v1['id']}/approve", headers=admin)).json()
    assert approved["state"] == "approved"
    assert approved["approved_by"].startswith("operator:")
    assert (await client.post(f"{base}/{v1['id']}/activate", headers=admin)).json()[
        "state"
    ] == "active"

    await client.post(f"{base}/{v2['id']}/approve", headers=admin)
    assert (await client.post(f"{base}/{v2['id']}/activate", headers=admin)).json()[
        "state"
    ] == "active"
    states = {
        v["version"]: v["state"] for v in (await client.get(base, headers=admin)).json()["data"]
    }
    # At most one active version: the earlier one stepped back to approved (rollback target).
    assert states == {"1.0.0": "approved", "1.1.0-rc.1+build.5": "active"}

    assert (await client.post(f"{base}/{v1['id']}/activate", headers=admin)).status_code == 200
    deprecated = await client.post(f"{base}/{v2['id']}/deprecate", headers=admin)
    assert deprecated.json()["state"] == "deprecated"
    assert (await client.post(f"{base}/{v2['id']}/activate", headers=admin)).status_code == 409
    assert (await client.get(f"{base}/{v1['id']}", headers=admin)).json()["state"] == "active"


async def test_version_of_another_agent_is_404(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await create_domain(client, admin, "payments")
    a = await create_agent(client, admin, "payments")
    b = await create_agent(client, admin, "payments")
    v = await create_version(client, admin, a["id"])
    r = await client.post(f"/v1/agents/{b['id']}/versions/{v['id']}/approve", headers=admin)
    assert r.status_code == 404


async def test_malformed_or_too_many_label_filters_are_422(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for bad in (
        ["tier"],
        ["=gold"],
        ["ti'er=gold"],
        ['$."x=1'],
        ["tier=a\x01b"],
        ["k" * 70 + "=v"],
        [f"k{i}=v" for i in range(17)],
    ):
        r = await client.get("/v1/agents", params={"label": bad}, headers=admin)
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    ok = await client.get(
        "/v1/agents", params={"label": [f"k{i}=v" for i in range(16)]}, headers=admin
    )
    assert ok.status_code == 200
    assert ok.json()["data"] == []

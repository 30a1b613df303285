"""Who approves a version: ``versions:approve`` (platform and domain admins, and the approver
role in its domains); with ``version_approval_separation`` never the operator that registered it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from control_plane.config import Settings
from tests.fixtures.factories import create_agent, create_domain, create_operator, create_version


@pytest.fixture(params=[False, True], ids=["separation-off", "separation-on"])
def separation(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def settings(settings: Settings, separation: bool) -> Settings:
    return settings.model_copy(update={"version_approval_separation": separation})


@pytest.fixture
async def world(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    await create_domain(client, admin, "alpha")
    await create_domain(client, admin, "beta")
    return {
        "agent": await create_agent(client, admin, "alpha"),
        "alpha_admin": await create_operator(client, admin, "domain_admin", ["alpha"]),
        "approver": await create_operator(client, admin, "approver", ["alpha"]),
        "beta_approver": await create_operator(client, admin, "approver", ["beta"]),
    }


def approve_url(agent: dict[str, Any], version: dict[str, Any]) -> str:
    return f"/v1/agents/{agent['id']}/versions/{version['id']}/approve"


async def test_the_registrant_approves_only_without_separation(
    client: httpx.AsyncClient, world: dict[str, Any], separation: bool
) -> None:
    agent, registrant = world["agent"], world["alpha_admin"]
    version = await create_version(client, registrant, agent["id"])
    assert version["registered_by"].startswith("operator:")
    r = await client.post(approve_url(agent, version), headers=registrant)
    if separation:
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "forbidden"
        assert "Separation of duties" in r.json()["detail"]
        got = await client.get(
            f"/v1/agents/{agent['id']}/versions/{version['id']}", headers=registrant
        )
        assert got.json()["state"] == "registered"
    else:
        assert r.status_code == 200, r.text
        assert r.json()["approved_by"] == version["registered_by"]


async def test_another_operator_approves(
    client: httpx.AsyncClient, admin: dict[str, str], world: dict[str, Any]
) -> None:
    agent = world["agent"]
    version = await create_version(client, world["alpha_admin"], agent["id"])
    r = await client.post(approve_url(agent, version), headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "approved"
    assert r.json()["approved_by"] != r.json()["registered_by"]


async def test_the_approver_role_approves_in_its_domains_only(
    client: httpx.AsyncClient, admin: dict[str, str], world: dict[str, Any]
) -> None:
    agent, approver = world["agent"], world["approver"]
    version = await create_version(client, admin, agent["id"])
    # An approver outside the agent's domain does not see it.
    r = await client.post(approve_url(agent, version), headers=world["beta_approver"])
    assert r.status_code == 404, r.text
    # The approver reads the version it is to approve ...
    url = f"/v1/agents/{agent['id']}/versions/{version['id']}"
    assert (await client.get(url, headers=approver)).status_code == 200
    assert (await client.get(f"/v1/agents/{agent['id']}/versions", headers=approver)).is_success
    r = await client.post(approve_url(agent, version), headers=approver)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "approved"
    # ... and nothing else: no activation, no registry reads or writes.
    assert (await client.post(f"{url}/activate", headers=approver)).status_code == 403
    assert (await client.get("/v1/agents", headers=approver)).status_code == 403
    r = await client.post(f"/v1/agents/{agent['id']}/versions", json={}, headers=approver)
    assert r.status_code in (403, 422)

"""Canary activation over HTTP: the assigned agents get the canary revision and the decision
says so; promotion and rollback are one call each, effective on the next decision."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from control_plane.policy.canary import on_canary
from tests.canary.helpers import BUNDLE, push_deny_all
from tests.fixtures.decisions import REFUND, decider
from tests.fixtures.events import events_until


async def _decide(client: httpx.AsyncClient, bot: dict[str, Any]) -> dict[str, Any]:
    """A decision, asked again while its engine is still loading the revision (a first load on
    a loaded machine can outlast the load bound: an engine_not_loaded deny)."""
    for _ in range(50):
        r = await client.post("/v1/decisions", json=REFUND, headers=bot["headers"])
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        if not any(x.startswith("engine_not_loaded") for x in answer["reasons"]):
            return answer
        await asyncio.sleep(0.2)
    raise AssertionError("the engine never loaded")


@pytest.mark.usefixtures("opa_bin")
async def test_domain_canary_promote_and_rollback(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    payments = await decider(client, admin)
    claims = await decider(client, admin, name="claims-bot", domain="claims")
    canary = await push_deny_all(client, admin)
    r = await client.put(
        f"{BUNDLE}/canary", json={"revision": canary, "domains": ["payments"]}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["canary"] == {"revision": canary, "percent": 0.0, "domains": ["payments"]}

    on = await _decide(client, payments)
    assert (on["revision"], on["served_by"], on["reasons"]) == (canary, "canary", ["maintenance"])
    off = await _decide(client, claims)
    assert (off["revision"], off["served_by"]) == (1, "active")
    # The stored decision records which revision served it and why.
    listed = (await client.get("/v1/decisions", headers=admin)).json()["data"]
    record = next(d for d in listed if d["id"] == on["decision_id"])
    assert (record["revision"], record["served_by"]) == (canary, "canary")

    r = await client.post(f"{BUNDLE}/canary/rollback", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["canary"] is None
    back = await _decide(client, payments)  # the very next decision
    assert (back["revision"], back["served_by"]) == (1, "active")

    await client.put(f"{BUNDLE}/canary", json={"revision": canary, "percent": 10}, headers=admin)
    r = await client.post(f"{BUNDLE}/canary/promote", headers=admin)
    assert r.status_code == 200, r.text
    assert (r.json()["active_revision"], r.json()["canary"]) == (canary, None)
    for bot in (payments, claims):
        answer = await _decide(client, bot)
        assert (answer["revision"], answer["served_by"]) == (canary, "active")

    types = [
        "policy.canary.started.v1",
        "policy.canary.rolled_back.v1",
        "policy.canary.started.v1",
        "policy.canary.promoted.v1",
        "policy.revision.activated.v1",
    ]

    def mine(events: list[dict[str, Any]]) -> list[str]:  # not the bootstrap's activation
        return [
            e["type"]
            for e in events
            if e["type"].startswith("policy.") and e["data"]["revision"] == canary
        ]

    events = await events_until(client, admin, lambda evs: len(mine(evs)) >= 5)
    assert mine(events) == types
    r = await client.get("/v1/audit/records", params={"domain": "platform"}, headers=admin)
    assert [rec["action"] for rec in r.json()["data"]] == [t.removesuffix(".v1") for t in types]


@pytest.mark.usefixtures("opa_bin")
async def test_the_server_assigns_agents_as_the_function_does(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    bots = [await decider(client, admin)]
    bots += [
        await decider(client, admin, name=f"bot-{i}", create_the_domain=False) for i in range(11)
    ]
    canary = await push_deny_all(client, admin)
    await client.put(f"{BUNDLE}/canary", json={"revision": canary, "percent": 50}, headers=admin)
    served = {b["agent"]["id"]: (await _decide(client, b))["served_by"] for b in bots}
    expected = {
        i: ("canary" if on_canary("default", i, "payments", 5_000, ()) else "active")
        for i in served
    }
    assert served == expected
    assert {"canary", "active"} == set(served.values())  # 12 agents at 50%: both, by these ids


async def test_bad_canary_requests_are_problems(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    async def put(body: dict[str, Any]) -> httpx.Response:
        return await client.put(f"{BUNDLE}/canary", json=body, headers=admin)

    assert (await put({"revision": 99, "percent": 10})).status_code == 404
    assert (await put({"revision": 1, "percent": 10})).status_code == 422  # the active one
    assert (await put({"revision": 1, "percent": 150})).status_code == 422
    assert (await put({"revision": 1, "percent": 10.001})).status_code == 422
    assert (await put({"revision": 1, "domains": ["Not A Domain"]})).status_code == 422
    # A string or a boolean is not a number here (lax validation read "99" as 99, true as 1).
    for body, pointer in (
        ({"revision": "99", "percent": 10}, "/body/revision"),
        ({"revision": True, "percent": 10}, "/body/revision"),
        ({"revision": 99, "percent": "10"}, "/body/percent"),
    ):
        r = await put(body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["pointer"] == pointer
    for verb in ("promote", "rollback"):
        r = await client.post(f"{BUNDLE}/canary/{verb}", headers=admin)
        assert r.status_code == 409
        assert r.json()["code"] == "conflict"

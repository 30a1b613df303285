"""Budgets and rate limits as operators set them and agents meet them."""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from control_plane.state import app_state
from tests.fixtures.decisions import REFUND, decider
from tests.fixtures.events import events_until
from tests.fixtures.factories import create_domain, create_operator
from tests.policy.helpers import find_opa_bin


def _refund(amount: int) -> dict[str, Any]:
    body = copy.deepcopy(REFUND)
    body["resource"]["amount"] = amount
    return body


async def _early_in_a_minute(margin: float = 15.0) -> None:
    """Wait for the next minute when less than ``margin`` seconds of this one are left. Budget
    windows are aligned to the clock (a minute window starts at a whole minute), so a test that
    counts decisions within one minute failed when a minute ended between them (seen on a
    loaded machine: the third decision of ``actions_per_minute: 2`` was allowed)."""
    left = 60.0 - time.time() % 60.0
    if left < margin:
        await asyncio.sleep(left + 0.05)


async def _decide(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    amount: int = 50,
    action: str | None = None,
) -> httpx.Response:
    body = _refund(amount)
    if action is not None:
        body["action"] = action
    r = await client.post("/v1/decisions", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r


async def test_fifty_concurrent_against_ten_a_minute(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin)
    agent_id = me["agent"]["id"]
    r = await client.put(
        f"/v1/agents/{agent_id}/budget", json={"actions_per_minute": 10}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["use"]["actions_per_minute"]["remaining"] == 10

    await _early_in_a_minute(margin=25.0)
    answers = await asyncio.gather(*(_decide(client, me["headers"]) for _ in range(50)))
    outcomes = Counter((a.json()["effect"], tuple(a.json()["reasons"])) for a in answers)
    assert outcomes == {("allow", ()): 10, ("deny", ("budget_exceeded",)): 40}
    refused = [a for a in answers if not a.json()["allow"]]
    for a in refused:
        retry = int(a.headers["retry-after"])
        assert 1 <= retry <= 60
        assert a.json()["retry_after"] == retry

    got = (await client.get(f"/v1/agents/{agent_id}/budget", headers=admin)).json()
    assert got["use"]["actions_per_minute"]["used"] == 10
    assert got["use"]["actions_per_minute"]["remaining"] == 0

    # Every refusal is an audit record and an event.
    records = (
        await client.get(
            "/v1/audit/records",
            params={"domain": "payments", "limit": 200},
            headers=admin,
        )
    ).json()["data"]
    assert sum(r["kind"] == "budget" and r["action"] == "budget.exceeded" for r in records) == 40
    events = await events_until(
        client, admin, lambda es: sum(e["type"] == "budget.exceeded.v1" for e in es) == 40
    )
    exceeded = [e for e in events if e["type"] == "budget.exceeded.v1"]
    assert len(exceeded) == 40
    assert {e["data"]["window"] for e in exceeded} == {"actions_per_minute"}


async def test_daily_spend_is_never_exceeded(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin, autonomy_level=3)  # no approval thresholds at level 3
    agent_id = me["agent"]["id"]
    r = await client.put(
        f"/v1/agents/{agent_id}/budget", json={"spend_per_day": 1000}, headers=admin
    )
    assert r.status_code == 200, r.text
    answers = await asyncio.gather(*(_decide(client, me["headers"], 60) for _ in range(25)))
    allowed = sum(a.json()["allow"] for a in answers)
    assert allowed == 16  # 16 * 60 = 960 <= 1000 < 17 * 60
    got = (await client.get(f"/v1/agents/{agent_id}/budget", headers=admin)).json()
    assert got["use"]["spend_per_day"]["used"] == 960
    # What is left still fits a small amount, and reads and zero amounts cost no spend.
    assert (await _decide(client, me["headers"], 40)).json()["allow"] is True
    assert (await _decide(client, me["headers"], 1)).json()["reasons"] == ["budget_exceeded"]


async def test_domain_budget_is_shared_and_null_removes(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    a = await decider(client, admin)
    b = await decider(client, admin, name="payout-bot", create_the_domain=False)
    b["action"] = "payments.invoice.read"  # granted to every agent of the domain
    r = await client.put(
        "/v1/domains/payments/budget",
        json={"actions_per_minute": 3, "actions_per_hour": 100},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    await _early_in_a_minute()
    answers = [
        (await _decide(client, h["headers"], action=h.get("action"))).json() for h in (a, b, a, b)
    ]
    assert [x["allow"] for x in answers] == [True, True, True, False], answers
    got = (await client.get("/v1/domains/payments/budget", headers=admin)).json()
    assert got["use"]["actions_per_minute"]["used"] == 3
    assert got["use"]["actions_per_hour"]["used"] == 3
    # A refusal took nothing from the hour window either.
    r = await client.put(
        "/v1/domains/payments/budget", json={"actions_per_minute": None}, headers=admin
    )
    assert r.json()["use"] == {}
    assert (await _decide(client, b["headers"], action=b["action"])).json()["allow"] is True


async def test_who_may_set_budgets(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    me = await decider(client, admin)
    agent_id = me["agent"]["id"]
    await create_domain(client, admin, "claims")
    claims_admin = await create_operator(client, admin, "domain_admin", ["claims"])
    payments_admin = await create_operator(client, admin, "domain_admin", ["payments"])
    auditor = await create_operator(client, admin, "auditor")
    body = {"actions_per_minute": 5}
    url = f"/v1/agents/{agent_id}/budget"
    assert (await client.put(url, json=body, headers=auditor)).status_code == 403
    assert (await client.get(url, headers=auditor)).status_code == 200
    assert (await client.put(url, json=body, headers=claims_admin)).status_code == 404
    assert (await client.get(url, headers=claims_admin)).status_code == 404
    assert (await client.put(url, json=body, headers=payments_admin)).status_code == 200
    r = await client.put("/v1/domains/payments/budget", json=body, headers=claims_admin)
    assert r.status_code == 404
    bad = await client.put(url, json={"actions_per_minute": -1}, headers=admin)
    assert bad.status_code == 422
    bad = await client.put(url, json={"spend_field": "agent.id"}, headers=admin)
    assert bad.status_code == 422
    # JSON true and "10" are not limits (lax validation read them as 1 and 10).
    for value in (True, "10", 1.5):
        bad = await client.put(url, json={"actions_per_minute": value}, headers=admin)
        assert bad.status_code == 422, (value, bad.text)
        assert bad.json()["errors"][0]["pointer"] == "/body/actions_per_minute"
    records = (
        await client.get("/v1/audit/records", params={"domain": "payments"}, headers=admin)
    ).json()["data"]
    assert [r["action"] for r in records if r["kind"] == "budget"] == ["budget.set"]
    # Counts are 32-bit in the database: one past it is a 422 (it was a 500 on PostgreSQL);
    # spend is 64-bit and takes up to 2^53 - 1 (I-JSON; 2^53 was a 422 naming /body/details).
    for field, beyond in (
        ("actions_per_minute", 2**31),
        ("actions_per_hour", 2**31),
        ("spend_per_day", 2**53),
    ):
        bad = await client.put(url, json={field: beyond}, headers=admin)
        assert bad.status_code == 422, (field, bad.text)
        assert bad.json()["errors"][0]["pointer"] == f"/body/{field}"
    r = await client.put(
        "/v1/domains/payments/budget",
        json={"actions_per_hour": 2**31 - 1, "spend_per_day": 2**53 - 1},
        headers=admin,
    )
    assert r.status_code == 200, r.text


@pytest.fixture
def validation(app: FastAPI) -> str:
    opa = find_opa_bin()
    if opa is None:
        pytest.skip("no OPA binary")
    app_state(app).settings = app_state(app).settings.model_copy(update={"opa_bin": opa})
    return opa


async def test_policy_sees_what_is_left(
    client: httpx.AsyncClient, admin: dict[str, str], validation: str
) -> None:
    """``input.vouched.budget``: the control plane's count, so policy can ask for approval
    near a limit."""
    policy = {
        "modules": {
            "agents/authz.rego": (
                "package agents.authz\n\n"
                "left := input.vouched.budget.agent.actions_per_minute\n\n"
                'decision := {"effect": "require_approval", "allow": false, '
                '"reasons": ["near_limit"], "obligations": []} if left <= 1\n\n'
                'decision := {"effect": "allow", "allow": true, "reasons": [], '
                '"obligations": [{"type": "seen", "left": left}]} if left > 1\n'
            )
        },
        "data": {},
    }
    r = await client.post("/v1/policies/default/revisions", json=policy, headers=admin)
    assert r.status_code == 201, r.text
    await client.post(
        f"/v1/policies/default/revisions/{r.json()['revision']}/activate", headers=admin
    )
    me = await decider(client, admin)
    await client.put(
        f"/v1/agents/{me['agent']['id']}/budget", json={"actions_per_minute": 3}, headers=admin
    )
    await _early_in_a_minute()
    seen = [(await _decide(client, me["headers"])).json() for _ in range(3)]
    assert [s["obligations"] for s in seen[:2]] == [
        [{"type": "seen", "left": 3}],
        [{"type": "seen", "left": 2}],
    ]
    assert seen[2]["effect"] == "require_approval"


async def test_a_window_that_has_passed_starts_again(
    client: httpx.AsyncClient, admin: dict[str, str], app: FastAPI
) -> None:
    me = await decider(client, admin, autonomy_level=3)
    agent_id = me["agent"]["id"]
    body = {"actions_per_minute": 2, "spend_per_day": 100}
    r = await client.put(f"/v1/agents/{agent_id}/budget", json=body, headers=admin)
    assert r.status_code == 200, r.text
    await _early_in_a_minute()
    assert (await _decide(client, me["headers"], 30)).json()["allow"] is True
    assert (await _decide(client, me["headers"], 30)).json()["allow"] is True
    assert (await _decide(client, me["headers"], 30)).json()["reasons"] == ["budget_exceeded"]
    # The minute and the day are over (their counters say they began a day and a minute ago).
    async with app_state(app).database.sessionmaker() as session:
        await session.exec(  # type: ignore[call-overload]
            text("UPDATE budget_counters SET window_start = window_start - 86400 WHERE key = :k"),
            params={"k": agent_id},
        )
        await session.commit()
    await _early_in_a_minute()
    assert (await _decide(client, me["headers"], 90)).json()["allow"] is True
    got = (await client.get(f"/v1/agents/{agent_id}/budget", headers=admin)).json()
    assert got["use"]["actions_per_minute"]["used"] == 1
    assert got["use"]["spend_per_day"]["used"] == 90
    assert (await _decide(client, me["headers"], 20)).json()["reasons"] == ["budget_exceeded"]

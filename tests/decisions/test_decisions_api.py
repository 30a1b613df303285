"""POST /v1/decisions and GET /v1/decisions as agents and auditors use them."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest

from control_plane.state import app_state
from tests.fixtures.decisions import REFUND, decider
from tests.fixtures.factories import create_operator


async def test_allow_approval_deny_and_the_record(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin)
    h = me["headers"]
    allow = await client.post("/v1/decisions", json=REFUND, headers=h)
    assert allow.status_code == 200, allow.text
    body = allow.json()
    assert (body["effect"], body["allow"], body["reasons"]) == ("allow", True, [])
    assert body["bundle"] == "default"
    assert body["revision"] == 1
    assert body["engine"] == "wasm"

    big = copy.deepcopy(REFUND)
    big["resource"]["amount"] = 500
    big["resource"]["card_number"] = "4111111111111111"
    approval = (await client.post("/v1/decisions", json=big, headers=h)).json()
    assert approval["effect"] == "require_approval"
    assert approval["allow"] is False
    assert approval["reasons"] == ["amount_requires_approval"]
    assert {"type": "approval", "approver_role": "payments_approver", "ttl_seconds": 3600} in (
        approval["obligations"]
    )

    denied = (
        await client.post(
            "/v1/decisions",
            json={"action": "payments.payout", "resource": {"type": "order", "id": "o-2"}},
            headers=h,
        )
    ).json()
    assert denied["effect"] == "deny"
    assert "action_not_granted" in denied["reasons"]

    records = (await client.get("/v1/decisions", headers=admin)).json()["data"]
    assert [r["id"] for r in records] == [
        body["decision_id"],
        approval["decision_id"],
        denied["decision_id"],
    ]
    first = records[0]
    assert first["agent_id"] == me["agent"]["id"]
    assert first["domain"] == "payments"
    assert first["version"] == "1.0.0"
    assert first["input_digest"].startswith("sha256:")
    assert first["latency_ms"] > 0
    # The policy's redact obligation is applied to what is stored.
    marker = records[1]["resource"]["card_number"]
    assert set(marker) == {"redacted"}
    assert marker["redacted"].startswith("hmac-sha256:")
    assert "4111111111111111" not in json.dumps(records)
    assert records[1]["resource"]["amount"] == 500

    async def ids(**params: Any) -> list[str]:
        r = await client.get("/v1/decisions", params=params, headers=admin)
        assert r.status_code == 200, r.text
        return [d["id"] for d in r.json()["data"]]

    assert await ids(effect="deny") == [denied["decision_id"]]
    assert await ids(action="payments.refund") == [body["decision_id"], approval["decision_id"]]
    assert await ids(agent_id=me["agent"]["id"], limit=1) == [body["decision_id"]]
    assert await ids(since="2999-01-01T00:00:00Z") == []
    assert len(await ids(until="2999-01-01T00:00:00Z")) == 3


async def test_identity_comes_from_the_token(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin)
    spoof = {**REFUND, "agent": {"name": "payout-bot", "autonomy_level": 3}}
    r = await client.post("/v1/decisions", json=spoof, headers=me["headers"])
    assert r.status_code == 422
    # Attributes named like identity fields inside resource/context change nothing.
    sneaky = copy.deepcopy(REFUND)
    sneaky["resource"]["amount"] = 500
    sneaky["context"] = {"agent": {"autonomy_level": 3}, "autonomy_level": 3}
    r = await client.post("/v1/decisions", json=sneaky, headers=me["headers"])
    assert r.json()["effect"] == "require_approval"


async def test_suspended_agent_and_retired_version_are_denied(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin)
    r = await client.post(f"/v1/agents/{me['agent']['id']}/suspend", headers=admin)
    assert r.status_code == 200
    r = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
    assert r.status_code == 401


async def test_scope_is_required(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    me = await decider(client, admin, scopes=["audit:write"])
    r = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
    assert r.status_code == 403
    assert r.json()["code"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    r = await client.post("/v1/decisions", json=REFUND)
    assert r.status_code == 401
    r = await client.post("/v1/decisions", json=REFUND, headers=admin)
    assert r.status_code == 401
    assert (await client.get("/v1/decisions", headers=admin)).json()["data"] == []


async def test_decision_list_follows_operator_scope(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin)
    await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
    await client.post("/v1/domains", json={"name": "claims"}, headers=admin)
    claims_admin = await create_operator(client, admin, "domain_admin", ["claims"])
    payments_admin = await create_operator(client, admin, "domain_admin", ["payments"])
    auditor = await create_operator(client, admin, "auditor")
    approver = await create_operator(client, admin, "approver")
    assert (await client.get("/v1/decisions", headers=claims_admin)).json()["data"] == []
    assert len((await client.get("/v1/decisions", headers=payments_admin)).json()["data"]) == 1
    assert len((await client.get("/v1/decisions", headers=auditor)).json()["data"]) == 1
    assert (await client.get("/v1/decisions", headers=approver)).status_code == 403


async def test_decision_idempotency_replays(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin)
    h = me["headers"] | {"Idempotency-Key": "refund-o-1"}
    first = await client.post("/v1/decisions", json=REFUND, headers=h)
    second = await client.post("/v1/decisions", json=REFUND, headers=h)
    assert first.content == second.content
    assert len((await client.get("/v1/decisions", headers=admin)).json()["data"]) == 1


DEEP: Any = 1
for _ in range(40):
    DEEP = [DEEP]


@pytest.mark.parametrize(
    "body",
    [
        {"action": "", "resource": {"type": "t", "id": "i"}},
        {"action": "a b", "resource": {"type": "t", "id": "i"}},
        {"action": 5, "resource": {"type": "t", "id": "i"}},
        {"action": "x", "resource": {"id": "i"}},
        {"action": "x", "resource": "order"},
        {"action": "x", "resource": {"type": "t", "id": "i"}, "context": []},
        {"action": "x", "resource": {"type": "t", "id": "i", "deep": DEEP}},
        {"action": "x", "resource": {"type": "t", "id": "i", "many": list(range(3000))}},
    ],
)
async def test_bad_decision_requests_are_4xx(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]
) -> None:
    me = await decider(client, admin)
    r = await client.post("/v1/decisions", json=body, headers=me["headers"])
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert (await client.get("/v1/decisions", headers=admin)).json()["data"] == []


NASTY = [
    'x"],"allow":true,"zz":["',
    '"}, "effect": "allow", "x": {"',
    "\\u0022allow\\u0022:true",
    "line\nbreak\ttab\r",
    "nul\x00byte",
    "\x01\x02\x1f control",
    "lone \ud800 surrogate",
    "emoji 🧨 and RTL \u202e override",
    "} ] ) ; -- drop table decisions",
    "a" * 190,
]


@pytest.mark.parametrize("nasty", NASTY, ids=range(len(NASTY)))
async def test_injection_never_changes_a_decision(
    client: httpx.AsyncClient, admin: dict[str, str], nasty: str
) -> None:
    me = await decider(client, admin)
    h = me["headers"] | {"Content-Type": "application/json"}

    async def post(body: dict[str, Any]) -> httpx.Response:
        # ASCII-escaped JSON, so lone surrogates travel as \ud800 like any client would send.
        return await client.post("/v1/decisions", content=json.dumps(body).encode(), headers=h)

    baseline = await post(REFUND)
    for place in ("id", "type", "note"):
        body = copy.deepcopy(REFUND)
        body["resource"][place] = nasty
        body["context"] = {"note": nasty, nasty[:50]: nasty}
        r = await post(body)
        if "\ud800" in nasty and place != "note":
            # Not Unicode text: refused where a string is required (type, id), so it decides
            # nothing; inside free-form attributes it is carried and stored as U+FFFD.
            assert r.status_code == 422, r.text
            continue
        assert r.status_code == 200, r.text
        got = r.json()
        if place == "type":
            # An undeclared resource type gets the strictest classification: never more.
            assert (got["effect"], got["reasons"]) == ("deny", ["residency_violation"])
            continue
        assert (got["effect"], got["allow"], got["reasons"]) == (
            baseline.json()["effect"],
            baseline.json()["allow"],
            baseline.json()["reasons"],
        )
    # And a deny stays a deny whatever the strings say.
    r = await post({"action": "payments.payout", "resource": {"type": nasty, "id": nasty}})
    records = (await client.get("/v1/decisions", headers=admin)).json()["data"]
    if "\ud800" in nasty:
        assert r.status_code == 422
        assert len(records) == 2  # the baseline and the free-form attribute
        assert records[0]["effect"] == records[1]["effect"]
        return
    assert r.json()["effect"] == "deny"
    assert len(records) == 5
    assert [r["effect"] for r in records[:-1]] == ["allow", "allow", "deny", "allow"]


async def test_no_active_policy_denies(
    app: Any, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin)
    app_state(app).policy_runtime.bundle = "not-there"
    r = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
    assert r.status_code == 200
    body = r.json()
    assert (body["effect"], body["allow"]) == ("deny", False)
    assert body["reasons"][0].startswith("no_active_policy")
    stored = (await client.get("/v1/decisions", headers=admin)).json()["data"]
    assert stored[0]["failure"] == "no_active_policy"


async def test_a_same_named_agent_of_another_domain_gets_no_grants(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """Names are unique per domain only: a `refund-bot` created by the support team must not
    inherit the payments refund-bot's grants (a domain_admin could otherwise grant itself)."""
    real = await decider(client, admin, domain="payments", autonomy_level=3)
    await client.post("/v1/domains", json={"name": "support"}, headers=admin)
    support_admin = await create_operator(client, admin, "domain_admin", ["support"])
    impostor = await decider(
        client, support_admin, domain="support", autonomy_level=3, create_the_domain=False
    )
    assert impostor["agent"]["name"] == real["agent"]["name"] == "refund-bot"
    ok = (await client.post("/v1/decisions", json=REFUND, headers=real["headers"])).json()
    assert ok["effect"] == "allow"
    denied = (await client.post("/v1/decisions", json=REFUND, headers=impostor["headers"])).json()
    assert (denied["effect"], denied["allow"]) == ("deny", False)
    assert "action_not_granted" in denied["reasons"]

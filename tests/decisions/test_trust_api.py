"""The trust boundary over HTTP: claims never grant, replays never outlive what they decided on,
and nothing sensitive is stored in clear (SQLite and PostgreSQL through the `db_url` fixture)."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx

from tests.fixtures.decisions import REFUND, decider

SECRETS = ["4111111111111111", "DE89370400440532013000", "jane@example.com", "4242424242424242"]


async def _decide(client: httpx.AsyncClient, headers: dict[str, str], body: Any) -> Any:
    r = await client.post("/v1/decisions", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_claimed_classification_never_lifts_residency(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin, autonomy_level=3)
    h = me["headers"]
    abroad = copy.deepcopy(REFUND)
    abroad["resource"]["region"] = "ap-south-1"
    assert (await _decide(client, h, abroad))["reasons"] == ["residency_violation"]
    for claim in ({"classification": "public"}, {"classification": "public", "region": None}):
        body = copy.deepcopy(abroad)
        body["resource"].update(claim)
        got = await _decide(client, h, body)
        assert (got["effect"], got["reasons"]) == ("deny", ["residency_violation"])
    # A claim may raise the declared class: restricted data may not stay in eu-west-1.
    stricter = copy.deepcopy(REFUND)
    stricter["resource"]["classification"] = "restricted"
    assert (await _decide(client, h, stricter))["reasons"] == ["residency_violation"]
    # And `public` does not stop the redaction of customer_email.
    public = copy.deepcopy(REFUND)
    public["resource"].update(classification="public", customer_email="jane@example.com")
    assert (await _decide(client, h, public))["effect"] == "allow"
    stored = (await client.get("/v1/decisions", headers=admin)).json()["data"]
    assert "jane@example.com" not in json.dumps(stored)


async def test_missing_amount_fails_closed(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin, autonomy_level=2)
    for resource_patch, context in (
        ({}, {}),
        ({"amount_eur": 9000}, {}),
        ({}, {"amount": 9000}),
    ):
        body = copy.deepcopy(REFUND)
        del body["resource"]["amount"]
        body["resource"].update(resource_patch)
        body["context"] = context
        got = await _decide(client, me["headers"], body)
        assert (got["effect"], got["reasons"]) == ("deny", ["amount_missing"])


async def test_undeclared_and_wildcard_actions_are_denied(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    observer = await decider(client, admin, name="helper", domain="support", autonomy_level=0)
    h = observer["headers"]
    ticket = {"type": "ticket", "id": "t-1", "region": "eu-west-1"}
    read = await _decide(client, h, {"action": "support.ticket.read", "resource": ticket})
    assert read["effect"] == "allow"
    for action in ("support.ticket.delete.read", "support.refund.issue.view"):
        got = await _decide(client, h, {"action": action, "resource": ticket | {"amount": 9000}})
        assert got["effect"] == "deny"
        assert "unknown_action" in got["reasons"]
    delete = await _decide(client, h, {"action": "support.ticket.delete", "resource": ticket})
    assert delete["reasons"] == ["autonomy_observe_only"]
    await client.post("/v1/domains", json={"name": "payments"}, headers=admin)
    payer = await decider(client, admin, name="invoicer", autonomy_level=3, create_the_domain=False)
    invoice = {"type": "invoice", "id": "i-1", "region": "eu-west-1"}
    star = await _decide(
        client, payer["headers"], {"action": "payments.invoice.*", "resource": invoice}
    )
    assert star["effect"] == "deny"
    assert "unknown_action" in star["reasons"]


async def test_nested_and_differently_cased_secrets_are_never_stored(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin, autonomy_level=3)
    body = copy.deepcopy(REFUND)
    body["resource"].update(
        {
            "payment": {"card_number": SECRETS[0], "method": "card"},
            "accounts": [{"bank": {"IBAN": SECRETS[1]}}],
            "customer": {"Customer_Email": SECRETS[2]},
            "Card_Number": SECRETS[3],
        }
    )
    got = await _decide(client, me["headers"], body)
    assert got["effect"] == "allow"
    text = (await client.get("/v1/decisions", headers=admin)).text
    for secret in SECRETS:
        assert secret not in text
    stored = json.loads(text)["data"][0]["resource"]
    assert stored["payment"]["method"] == "card"
    assert stored["payment"]["card_number"]["redacted"].startswith("hmac-sha256:")
    assert set(stored["accounts"][0]["bank"]["IBAN"]) == {"redacted"}


async def test_a_replay_never_outlives_what_it_was_decided_on(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin, autonomy_level=2)
    agent_url = f"/v1/agents/{me['agent']['id']}"
    key = me["headers"] | {"Idempotency-Key": "refund-o-1"}
    first = await client.post("/v1/decisions", json=REFUND, headers=key)
    assert first.json()["effect"] == "allow"

    # Nothing changed: the stored answer is replayed, and the replay is recorded.
    again = await client.post("/v1/decisions", json=REFUND, headers=key)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.content == first.content
    decision_id = first.json()["decision_id"]
    replays = (await client.get(f"/v1/decisions/{decision_id}/replays", headers=admin)).json()
    assert [r["decision_id"] for r in replays["data"]] == [decision_id]
    assert replays["data"][0]["replayed_at"]
    # A decision that does not exist has no replays to list: 404, not an empty page.
    missing = "01890000-0000-7000-8000-000000000000"
    r = await client.get(f"/v1/decisions/{missing}/replays", headers=admin)
    assert r.status_code == 404, r.text

    # The agent is lowered to observe-only: the same key is decided again, not replayed.
    etag = (await client.get(agent_url, headers=admin)).headers["etag"]
    r = await client.patch(
        agent_url, json={"autonomy_level": 0}, headers=admin | {"If-Match": etag}
    )
    assert r.status_code == 200, r.text
    stale = await client.post("/v1/decisions", json=REFUND, headers=key)
    assert stale.status_code == 200
    assert "idempotent-replayed" not in stale.headers
    assert (stale.json()["effect"], stale.json()["reasons"]) == ("deny", ["autonomy_observe_only"])
    assert stale.json()["decision_id"] != decision_id
    # ...and that new answer is what the key now replays.
    replayed = await client.post("/v1/decisions", json=REFUND, headers=key)
    assert replayed.headers.get("idempotent-replayed") == "true"
    assert replayed.json()["decision_id"] == stale.json()["decision_id"]

    records = (await client.get("/v1/decisions", headers=admin)).json()["data"]
    assert [d["id"] for d in records] == [decision_id, stale.json()["decision_id"]]
    replays = (await client.get(f"/v1/decisions/{decision_id}/replays", headers=admin)).json()
    assert len(replays["data"]) == 1


async def test_a_new_policy_revision_invalidates_replays(
    app: Any, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin, autonomy_level=2)
    key = me["headers"] | {"Idempotency-Key": "refund-o-2"}
    first = (await client.post("/v1/decisions", json=REFUND, headers=key)).json()
    assert first["effect"] == "allow"
    revisions = (await client.get("/v1/policies/default/revisions", headers=admin)).json()
    current = revisions["data"][0]
    detail = (
        await client.get(f"/v1/policies/default/revisions/{current['revision']}", headers=admin)
    ).json()
    data = detail["data"]
    data["authz"]["autonomy"]["levels"][2]["approval_above_amount"] = 10
    pushed = await client.post(
        "/v1/policies/default/revisions",
        json={"modules": detail["sources"], "data": data},
        headers=admin,
    )
    assert pushed.status_code == 201, pushed.text
    number = pushed.json()["revision"]
    r = await client.post(f"/v1/policies/default/revisions/{number}/activate", headers=admin)
    assert r.status_code == 200, r.text
    again = await client.post("/v1/decisions", json=REFUND, headers=key)
    assert "idempotent-replayed" not in again.headers
    assert again.json()["effect"] == "require_approval"
    assert again.json()["revision"] == first["revision"] + 1


async def test_replays_are_visible_only_in_the_callers_domains(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    from tests.fixtures.factories import create_operator

    me = await decider(client, admin)
    key = me["headers"] | {"Idempotency-Key": "k"}
    first = (await client.post("/v1/decisions", json=REFUND, headers=key)).json()
    await client.post("/v1/decisions", json=REFUND, headers=key)
    await client.post("/v1/domains", json={"name": "claims"}, headers=admin)
    other = await create_operator(client, admin, "domain_admin", ["claims"])
    url = f"/v1/decisions/{first['decision_id']}/replays"
    # Outside the caller's domains the decision is not found, as GET /v1/decisions/{id} says.
    assert (await client.get(url, headers=other)).status_code == 404
    assert len((await client.get(url, headers=admin)).json()["data"]) == 1
    assert (await client.get(url)).status_code == 401

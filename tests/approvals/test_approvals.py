"""Approvals as agents and approvers use them: bound to the exact action, used once."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import col

from control_plane.models import Approval
from tests.fixtures.decisions import REFUND, decider
from tests.fixtures.factories import bearer, create_domain, create_operator

BIG = copy.deepcopy(REFUND)
BIG["resource"]["amount"] = 500  # above level 1's threshold (100): require_approval


async def _approver(
    client: httpx.AsyncClient, admin: dict[str, str], domains: list[str], name: str | None = None
) -> dict[str, str]:
    if name is None:
        return await create_operator(client, admin, "approver", domains)
    r = await client.post(
        "/v1/operators",
        json={"name": name, "role": "approver", "domains": domains},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return bearer(r.json()["token"])


async def _ask(client: httpx.AsyncClient, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    body = copy.deepcopy(BIG)
    body.update(extra)
    r = await client.post("/v1/decisions", json=body, headers=headers)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def _pending(client: httpx.AsyncClient, admin: dict[str, str]) -> tuple[dict[str, Any], str]:
    me = await decider(client, admin)
    first = await _ask(client, me["headers"])
    assert first["effect"] == "require_approval"
    assert first["approval_id"]
    return me, first["approval_id"]


async def test_approve_then_use_once(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    me, approval_id = await _pending(client, admin)
    h = me["headers"]
    approver = await _approver(client, admin, ["payments"])

    got = (await client.get(f"/v1/approvals/{approval_id}", headers=approver)).json()
    assert got["state"] == "pending"
    assert got["action"] == "payments.refund"
    assert got["reasons"] == ["amount_requires_approval"]
    assert got["agent_id"] == me["agent"]["id"]
    assert len(got["input_hash"]) == 64

    early = await _ask(client, h, approval_id=approval_id)
    assert (early["effect"], early["reasons"]) == ("deny", ["approval_pending"])

    r = await client.post(
        f"/v1/approvals/{approval_id}/approve", json={"comment": "checked"}, headers=approver
    )
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["comment"]) == ("approved", "checked")
    again = await client.post(f"/v1/approvals/{approval_id}/deny", headers=approver)
    assert again.status_code == 409

    # The retry's context may carry another time: time is not part of what is bound.
    used = await _ask(client, h, approval_id=approval_id, context={"time": "later"})
    assert (used["effect"], used["allow"], used["reasons"]) == ("allow", True, ["approved"])
    assert used["approval_id"] == approval_id
    twice = await _ask(client, h, approval_id=approval_id)
    assert (twice["effect"], twice["reasons"]) == ("deny", ["approval_used"])
    after = (await client.get(f"/v1/approvals/{approval_id}", headers=approver)).json()
    assert after["state"] == "used"
    assert after["used_by_decision_id"] == used["decision_id"]

    # The audit log holds the request, the verdict and the use.
    records = (
        await client.get("/v1/audit/records", params={"domain": "payments"}, headers=admin)
    ).json()["data"]
    actions = [r["action"] for r in records if r["kind"] == "approval"]
    assert actions == ["approval.requested", "approval.approved", "approval.used"]


async def test_changed_action_is_a_mismatch(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me, approval_id = await _pending(client, admin)
    approver = await _approver(client, admin, ["payments"])
    r = await client.post(f"/v1/approvals/{approval_id}/approve", headers=approver)
    assert r.status_code == 200
    for change in ({"amount": 501}, {"id": "o-2"}, {"amount": 50}):
        body = copy.deepcopy(BIG)
        body["resource"].update(change)
        body["approval_id"] = approval_id
        answer = (await client.post("/v1/decisions", json=body, headers=me["headers"])).json()
        assert (answer["effect"], answer["reasons"]) == ("deny", ["approval_mismatch"]), change
    other = await _ask(client, me["headers"], approval_id="01890000-0000-7000-8000-000000000000")
    assert other["reasons"] == ["approval_mismatch"]
    # The approval itself is still good for the exact action.
    ok = await _ask(client, me["headers"], approval_id=approval_id)
    assert ok["reasons"] == ["approved"]


async def test_denied_and_expired(
    client: httpx.AsyncClient, admin: dict[str, str], db_url: str
) -> None:
    me, approval_id = await _pending(client, admin)
    r = await client.post(
        f"/v1/approvals/{approval_id}/deny", json={"comment": "no"}, headers=admin
    )
    assert r.status_code == 200
    assert r.json()["state"] == "denied"
    assert (await _ask(client, me["headers"], approval_id=approval_id))["reasons"] == [
        "approval_denied"
    ]

    second = (await _ask(client, me["headers"]))["approval_id"]
    engine = create_async_engine(db_url)
    try:  # the clock moves on: the approval's expiry passes
        async with engine.begin() as conn:
            await conn.execute(
                update(Approval)
                .where(col(Approval.id) == uuid.UUID(second))
                .values(expires_at=datetime(2000, 1, 1, tzinfo=UTC))
            )
    finally:
        await engine.dispose()
    got = (await client.get(f"/v1/approvals/{second}", headers=admin)).json()
    assert got["state"] == "expired"
    assert (await _ask(client, me["headers"], approval_id=second))["reasons"] == [
        "approval_expired"
    ]
    late = await client.post(f"/v1/approvals/{second}/approve", headers=admin)
    assert late.status_code == 409
    listed = (await client.get("/v1/approvals?state=expired", headers=admin)).json()["data"]
    assert [a["id"] for a in listed] == [second]
    listed = (await client.get("/v1/approvals?state=denied", headers=admin)).json()["data"]
    assert [a["id"] for a in listed] == [approval_id]


async def test_who_may_decide(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """Owner and non-approver roles of the domain: 403; approver of another domain: 404."""
    _, approval_id = await _pending(client, admin)
    await create_domain(client, admin, "claims")
    owner = await _approver(client, admin, ["payments"], name="o")  # decider's owner is "o"
    forbidden = {
        "owner": owner,
        # The same person in other letters: names are compared as people read them.
        "owner, upper case": await _approver(client, admin, ["payments"], name=" O "),
        "domain_admin": await create_operator(client, admin, "domain_admin", ["payments"]),
        "auditor": await create_operator(client, admin, "auditor"),
    }
    for who, headers in forbidden.items():
        for verb in ("approve", "deny"):
            r = await client.post(f"/v1/approvals/{approval_id}/{verb}", headers=headers)
            assert r.status_code == 403, (who, verb, r.text)
            assert r.headers["content-type"] == "application/problem+json"
    elsewhere = await _approver(client, admin, ["claims"])
    for verb in ("approve", "deny"):
        r = await client.post(f"/v1/approvals/{approval_id}/{verb}", headers=elsewhere)
        assert r.status_code == 404, r.text
    assert (await client.get(f"/v1/approvals/{approval_id}", headers=elsewhere)).status_code == 404
    assert (await client.get("/v1/approvals", headers=elsewhere)).json()["data"] == []
    unknown = "01890000-0000-7000-8000-000000000000"
    approver = await _approver(client, admin, ["payments"])
    assert (
        await client.post(f"/v1/approvals/{unknown}/approve", headers=approver)
    ).status_code == 404
    assert (await client.post(f"/v1/approvals/{approval_id}/approve")).status_code == 401
    r = await client.post(f"/v1/approvals/{approval_id}/approve", headers=approver)
    assert r.status_code == 200, r.text
    assert r.json()["resolved_by"].startswith("approver-")


async def test_list_filters_and_pages(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    me, first = await _pending(client, admin)
    ids = [first] + [(await _ask(client, me["headers"]))["approval_id"] for _ in range(4)]
    await client.post(f"/v1/approvals/{ids[0]}/approve", headers=admin)
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 2, "state": "pending", "domain": "payments"}
        if after:
            params["after"] = after
        page = (await client.get("/v1/approvals", params=params, headers=admin)).json()
        seen += [a["id"] for a in page["data"]]
        if not page["has_more"]:
            break
        after = page["next_after"]
    assert seen == ids[1:]
    by_agent = await client.get(
        "/v1/approvals", params={"agent_id": me["agent"]["id"]}, headers=admin
    )
    assert len(by_agent.json()["data"]) == 5
    bad = await client.get("/v1/approvals", params={"state": "maybe"}, headers=admin)
    assert bad.status_code == 422


async def test_concurrent_retries_use_it_once(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me, approval_id = await _pending(client, admin)
    r = await client.post(f"/v1/approvals/{approval_id}/approve", headers=admin)
    assert r.status_code == 200
    answers = await asyncio.gather(
        *(_ask(client, me["headers"], approval_id=approval_id) for _ in range(20))
    )
    outcomes = Counter((a["effect"], tuple(a["reasons"])) for a in answers)
    assert outcomes == {("allow", ("approved",)): 1, ("deny", ("approval_used",)): 19}

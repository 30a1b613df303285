"""Impact analysis over HTTP: exactly the decisions that change, streamed in pages, as a job
for large windows, and problem+json for what cannot be analysed."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from control_plane.impact import service as impact
from control_plane.kit.db import create_engine
from control_plane.policy.engines import LoadedBundle
from control_plane.policy.engines.wasm import WasmEngine
from tests.fixtures.factories import create_operator
from tests.impact.support import (
    BUNDLE,
    no_invoice_grant,
    store_decisions,
    tighter_refunds,
    upload,
)

pytestmark = pytest.mark.opa

N = 320


async def _direct(db_url: str, revision: int) -> dict[str, tuple[str, str]]:
    """Every stored decision evaluated directly (its stored input, a fresh engine loaded with
    the candidate): {id: (stored effect, candidate's effect)}."""
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            rev = (
                await conn.execute(
                    sa.text(
                        "SELECT modules, data, digest, wasm FROM policy_revisions "
                        "WHERE bundle = :b AND revision = :r"
                    ),
                    {"b": BUNDLE, "r": revision},
                )
            ).one()
            rows = (await conn.execute(sa.text("SELECT id, effect, input FROM decisions"))).all()
    finally:
        await engine.dispose()

    def doc(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    wasm = WasmEngine(threads=1)
    await wasm.load(LoadedBundle(doc(rev[0]), doc(rev[1]), str(revision), rev[2], bytes(rev[3])))
    out: dict[str, tuple[str, str]] = {}
    try:
        for decision_id, effect, stored in rows:
            assert stored is not None
            result = await wasm.evaluate(doc(stored))
            out[str(uuid.UUID(str(decision_id)))] = (effect, str(result.effect))
    finally:
        await wasm.aclose()
    return out


async def test_reports_exactly_the_decisions_that_change(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(impact, "PAGE_SIZE", 37)  # many pages, one partial at the end
    stored = await store_decisions(client, admin, N)
    candidate = await upload(client, admin, tighter_refunds(50))

    r = await client.post(
        f"/v1/policies/{BUNDLE}/revisions/{candidate}/impact",
        json={"max_listed": 1000},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["total"] == N
    assert report["replayed"] == N
    assert report["compared"] == N

    direct = await _direct(db_url, candidate)
    should_change = {i for i, (old, new) in direct.items() if old != new}
    # What the test knows of the rule: refunds of 51..100 (allowed at level 1) now need approval.
    expected = {
        i
        for i, d in stored.items()
        if d["request"]["action"] == "payments.refund"
        and 50 < d["request"]["resource"]["amount"] <= 100
    }
    assert expected
    assert should_change == expected
    assert {c["decision_id"] for c in report["changed"]} == expected
    assert report["changes"] == {"allow->require_approval": len(expected)}
    assert report["unchanged"] == N - len(expected)
    assert report["changed_truncated"] is False
    for change in report["changed"]:
        assert change["old_effect"] == "allow"
        assert change["old_reasons"] == []
        assert change["new_reasons"] == ["amount_requires_approval"]
    # Inputs with a card number were redacted on record: replayed, but not exactly.
    redacted = {i for i, d in stored.items() if "card_number" in d["request"]["resource"]}
    assert report["not_exact"] == {"no_input": 0, "redacted": len(redacted), "governance_gate": 0}
    assert {d["decision_id"] for d in report["not_exact_decisions"]} == redacted
    assert all(c["exact"] is (c["decision_id"] not in redacted) for c in report["changed"])

    # The filters select: one action, a window, a cap; only what is listed is replayed.
    r = await client.post(
        f"/v1/policies/{BUNDLE}/revisions/{candidate}/impact",
        json={"action": "payments.invoice.read", "limit": 25},
        headers=admin,
    )
    assert r.json()["total"] == 25
    assert r.json()["changes"] == {}
    r = await client.post(
        f"/v1/policies/{BUNDLE}/revisions/{candidate}/impact",
        json={"until": "2000-01-01T00:00:00Z"},
        headers=admin,
    )
    assert r.json()["total"] == 0
    r = await client.post(
        f"/v1/policies/{BUNDLE}/revisions/{candidate}/impact",
        json={"domain": "claims", "max_listed": 0},
        headers=admin,
    )
    assert r.json()["total"] == 0
    r = await client.post(
        f"/v1/policies/{BUNDLE}/revisions/{candidate}/impact",
        json={"max_listed": 3},
        headers=admin,
    )
    listed = r.json()
    assert len(listed["changed"]) == 3
    assert listed["changed_truncated"] is True
    assert listed["changes"] == report["changes"]


async def test_large_windows_run_as_a_job_with_progress(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    stored = await store_decisions(client, admin, 40)
    candidate = await upload(client, admin, no_invoice_grant())
    path = f"/v1/policies/{BUNDLE}/revisions/{candidate}/impact"
    inline = (await client.post(path, json={}, headers=admin)).json()
    invoices = {i for i, d in stored.items() if d["request"]["action"] == "payments.invoice.read"}
    assert inline["changes"] == {"allow->deny": len(invoices)}
    assert {c["decision_id"] for c in inline["changed"]} == invoices

    keyed = {**admin, "Idempotency-Key": "impact-job-1"}
    r = await client.post(path, json={"background": True}, headers=keyed)
    assert r.status_code == 202, r.text
    job = r.json()
    # Retried with its key: the same job, not a second one.
    again = await client.post(path, json={"background": True}, headers=keyed)
    assert again.status_code == 202
    assert again.json()["id"] == job["id"]
    assert r.headers["location"] == f"{path}/{job['id']}"
    assert job["total"] == 40
    assert job["status"] == "running"
    for _ in range(200):
        got = await client.get(f"{path}/{job['id']}", headers=admin)
        assert got.status_code == 200, got.text
        if got.json()["status"] != "running":
            break
        assert 0 <= got.json()["done"] <= 40
        await asyncio.sleep(0.05)
    finished = got.json()
    assert finished["status"] == "succeeded", finished
    assert finished["done"] == finished["total"] == 40
    report = finished["report"]
    report.pop("duration_seconds"), inline.pop("duration_seconds")
    assert report == inline

    # Only the operator who started it reads it; another job id is nobody's.
    auditor = await create_operator(client, admin, "auditor")
    assert (await client.get(f"{path}/{job['id']}", headers=auditor)).status_code == 404
    other = f"{path}/00000000-0000-4000-8000-000000000000"
    missing = await client.get(other, headers=admin)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert (await client.get(f"{path}/not-a-uuid", headers=admin)).status_code == 422


async def test_decisions_without_an_input_or_decided_by_a_gate_are_named(
    client: httpx.AsyncClient, admin: dict[str, str], db_url: str, is_postgres: bool
) -> None:
    stored = await store_decisions(client, admin, 8)
    ids = sorted(stored)

    def key(i: str) -> str:  # how each database stores a UUID
        return i if is_postgres else uuid.UUID(i).hex

    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            # As recorded before inputs were kept, and as a budget's refusal.
            await conn.execute(
                sa.text("UPDATE decisions SET input = NULL WHERE id = :i"), {"i": key(ids[0])}
            )
            await conn.execute(
                sa.text("UPDATE decisions SET effect = 'deny', reasons = :r WHERE id = :i"),
                {"r": '["budget_exceeded"]', "i": key(ids[1])},
            )
    finally:
        await engine.dispose()
    candidate = await upload(client, admin, tighter_refunds(50))
    r = await client.post(
        f"/v1/policies/{BUNDLE}/revisions/{candidate}/impact", json={}, headers=admin
    )
    report = r.json()
    assert report["total"] == 8
    assert report["replayed"] == 7
    assert report["compared"] == 6
    assert report["not_exact"]["no_input"] == 1
    assert report["not_exact"]["governance_gate"] == 1
    reasons = {d["decision_id"]: d["reason"] for d in report["not_exact_decisions"]}
    assert reasons[ids[0]] == "no_input"
    assert reasons[ids[1]] == "governance_gate"
    assert "deny->allow" not in report["changes"]  # the budget's deny is not policy's


async def test_what_cannot_be_analysed_is_a_problem(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await store_decisions(client, admin, 2)
    path = f"/v1/policies/{BUNDLE}/revisions/1/impact"
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("/v1/policies/nope/revisions/1/impact", {}, 404),
        (f"/v1/policies/{BUNDLE}/revisions/99/impact", {}, 404),
        (f"/v1/policies/{BUNDLE}/revisions/0/impact", {}, 422),
        (path, {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 422),
        (path, {"since": "yesterday"}, 422),
        (path, {"limit": 0}, 422),
        (path, {"limit": 100_001}, 422),
        (path, {"agent_id": "x"}, 422),
        (path, {"domain": "Not A Domain"}, 422),
        (path, {"colour": "blue"}, 422),
    ]
    for url, body, status in cases:
        r = await client.post(url, json=body, headers=admin)
        assert r.status_code == status, (url, body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    assert (await client.post(path, json={})).status_code == 401
    # Reading policy and decisions both: a domain admin reads decisions, not policy.
    domain_admin = await create_operator(client, admin, "domain_admin", ["payments"])
    r = await client.post(path, json={}, headers=domain_admin)
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"
    auditor = await create_operator(client, admin, "auditor")
    assert (await client.post(path, json={}, headers=auditor)).status_code == 200

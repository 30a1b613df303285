"""Every decision is an audit record in the same transaction; redacted values never stored."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlmodel import SQLModel

import control_plane.models  # noqa: F401  (every table on SQLModel.metadata)
from control_plane.kit.db import create_engine
from tests.audit.support import record, send, settle, writer
from tests.fixtures.decisions import REFUND

MARKER = "MARKER-7f3a9c-secret"


async def _exec(db_url: str, *statements: str) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            for statement in statements:
                await conn.exec_driver_sql(statement)
    finally:
        await engine.dispose()


async def _every_value(db_url: str) -> str:
    """Every value of every table, as text (bytes decoded), to search for a marker."""
    engine = create_engine(db_url)
    out: list[str] = []
    try:
        async with engine.connect() as conn:
            for table in SQLModel.metadata.sorted_tables:
                for row in (await conn.execute(sa.select(table))).all():
                    for value in row:
                        if isinstance(value, bytes | memoryview):
                            out.append(bytes(value).decode("utf-8", "replace"))
                        else:
                            out.append(str(value))
    finally:
        await engine.dispose()
    return "\n".join(out)


async def _inputs(db_url: str) -> list[Any]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT input FROM decisions"))).all()
    finally:
        await engine.dispose()
    return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]


async def test_a_decision_is_an_audit_record(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await writer(client, admin)
    r = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
    assert r.status_code == 200, r.text
    decision = r.json()
    r = await client.get(
        "/v1/audit/records", params={"decision_id": decision["decision_id"]}, headers=admin
    )
    [item] = r.json()["data"]
    assert item["kind"] == "decision"
    assert item["id"] == decision["decision_id"]
    rec = item["record"]
    assert rec["decision"]["effect"] == decision["effect"]
    assert rec["decision"]["engine"] == decision["engine"]
    assert rec["decision"]["revision"] == decision["revision"]
    assert rec["decision"]["reasons"] == decision["reasons"]
    assert rec["decision"]["input_digest"].startswith("sha256:")
    assert rec["agent"]["id"] == me["agent"]["id"]
    await settle(app)
    body = (await client.get(f"/v1/audit/records/{item['id']}", headers=admin)).json()
    assert body["log"]["index"] == 0
    assert body["proof"]["size"] == 1


async def test_no_decision_without_its_audit_record(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    db_url: str,
    is_postgres: bool,
) -> None:
    me = await writer(client, admin)
    if is_postgres:
        await _exec(
            db_url,
            "CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'audit device down'; END $$",
            "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_records "
            "FOR EACH ROW EXECUTE FUNCTION fail_audit()",
        )
    else:
        await _exec(
            db_url,
            "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_records "
            "BEGIN SELECT RAISE(ABORT, 'audit device down'); END",
        )
    r = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "service_unavailable"
    assert (await client.get("/v1/decisions", headers=admin)).json()["data"] == []
    assert (await client.get("/v1/audit/records", headers=admin)).json()["data"] == []


async def test_redacted_values_are_never_stored_exported_or_logged(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    db_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    me = await writer(client, admin)
    r = await client.put(
        "/v1/audit/logs/payments/redaction",
        json={"fields": ["inputs.**.ssn", "outputs.token"]},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    bad = await client.put(
        "/v1/audit/logs/payments/redaction", json={"fields": ["a..b"]}, headers=admin
    )
    assert bad.status_code == 422
    # The default policy obliges redaction of resource.card_number for payments.refund.
    ask: dict[str, Any] = {
        "action": "payments.refund",
        "resource": {"type": "order", "id": "o-9", "amount": 40, "card_number": MARKER},
    }
    r = await client.post("/v1/decisions", json=ask, headers=me["headers"])
    assert r.status_code == 200, r.text
    decision_id = r.json()["decision_id"]
    linked = record(
        decision_id=decision_id,
        resource={"type": "order", "id": "o-9", "card_number": MARKER},
        inputs={"customer": {"ssn": MARKER, "name": "Ann"}},
        outputs={"token": MARKER, "ok": True},
    )
    same_value_elsewhere = record(inputs={"people": [{"SSN": MARKER}]})
    assert await send(client, me["headers"], [linked, same_value_elsewhere]) == ["stored"] * 2
    await settle(app)

    got = (await client.get(f"/v1/audit/records/{linked['id']}", headers=admin)).json()
    marker = got["record"]["inputs"]["customer"]["ssn"]
    assert marker["redacted"].startswith("hmac-sha256:")
    assert got["record"]["resource"]["card_number"] == marker  # equal values stay comparable
    assert got["record"]["inputs"]["customer"]["name"] == "Ann"
    other = await client.get(f"/v1/audit/records/{same_value_elsewhere['id']}", headers=admin)
    assert other.json()["record"]["inputs"]["people"][0]["SSN"] == marker
    decision_record = (await client.get(f"/v1/audit/records/{decision_id}", headers=admin)).json()
    assert decision_record["record"]["resource"]["card_number"] == marker

    export = await client.get("/v1/audit/export", params={"domain": "payments"}, headers=admin)
    assert export.status_code == 200
    assert len(export.text.splitlines()) == 3
    assert MARKER not in export.text
    assert MARKER not in await _every_value(db_url)
    # The decision's stored input (kept for impact analysis) holds the marker, not the value.
    [stored_input] = await _inputs(db_url)
    assert stored_input["resource"]["card_number"] == marker
    assert stored_input["resource"]["amount"] == 40
    captured = capsys.readouterr()
    assert MARKER not in captured.out + captured.err

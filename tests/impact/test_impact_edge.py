"""Edge decisions (``POST /v1/logs``) keep their input in the centre's form, and are replayed."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from control_plane.kit.db import create_engine
from tests.fixtures.decisions import decider
from tests.fixtures.factories import bearer
from tests.fixtures.oauth2 import basic
from tests.impact.support import BUNDLE, tighter_refunds, upload

pytestmark = pytest.mark.opa

SECRET = "4111111111111111"


async def _stored_inputs(db_url: str) -> list[Any]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT input FROM decisions"))).all()
    finally:
        await engine.dispose()
    return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]


async def test_edge_decisions_are_replayed_from_their_logged_input(
    client: httpx.AsyncClient, admin: dict[str, str], db_url: str
) -> None:
    agent = await decider(client, admin, name="refund-bot", domain="payments")
    r = await client.post(
        "/v1/domains/payments/enforcement-points",
        json={"name": "opa-1", "kind": "opa"},
        headers=admin,
    )
    cred = r.json()["credential"]
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(cred["client_id"], cred["client_secret"]),
    )
    point = bearer(r.json()["access_token"])
    token = agent["headers"]["Authorization"].removeprefix("Bearer ")
    decision_id = str(uuid.uuid4())
    event = {
        "decision_id": decision_id,
        "path": "agents/authz/decision",
        "input": {
            "token": token,
            "action": "payments.refund",
            "resource": {
                "type": "order",
                "id": "o-7",
                "amount": 70,
                "region": "eu-west-1",
                "card_number": SECRET,
            },
            "agent": {"id": "forged", "autonomy_level": 3},  # never read
        },
        "result": {
            "effect": "allow",
            "allow": True,
            "reasons": [],
            "obligations": [{"type": "redact", "fields": ["**.card_number"]}],
        },
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    r = await client.post("/v1/logs", json=[event], headers=point)
    assert r.json()["accepted"] == 1, r.text

    [stored] = await _stored_inputs(db_url)
    assert stored["agent"]["id"] == agent["agent"]["id"]
    assert stored["agent"]["autonomy_level"] == 1
    assert stored["resource"]["card_number"]["redacted"].startswith("hmac-sha256:")
    assert stored["vouched"]["time"].endswith("Z")
    assert "token" not in stored
    assert token not in json.dumps(stored)
    assert SECRET not in json.dumps(stored)

    candidate = await upload(client, admin, tighter_refunds(50))
    r = await client.post(
        f"/v1/policies/{BUNDLE}/revisions/{candidate}/impact", json={}, headers=admin
    )
    report = r.json()
    assert report["changes"] == {"allow->require_approval": 1}
    [change] = report["changed"]
    assert change["decision_id"] == decision_id
    assert change["exact"] is False  # the card number was redacted
    assert report["not_exact"]["redacted"] == 1

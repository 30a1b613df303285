"""The audit log over HTTP: ingestion, idempotency by id, proofs, checkpoints, keys."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from control_plane.audit.log import leaf_canonical
from control_plane.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from control_plane.audit.note import Verifier, open_checkpoint
from tests.audit.support import record, send, settle, writer
from tests.fixtures.factories import create_domain


def b64d(text: str) -> bytes:
    return base64.b64decode(text)


async def test_a_batch_sent_three_times_is_stored_once(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await writer(client, admin)
    batch = [record(), record(status="failed"), record(action="payments.payout")]
    assert await send(client, me["headers"], batch) == ["stored"] * 3
    assert await send(client, me["headers"], batch) == ["duplicate"] * 3
    assert await send(client, me["headers"], batch) == ["duplicate"] * 3
    changed = [dict(batch[0], rationale="something else"), record()]
    assert await send(client, me["headers"], changed) == ["conflict", "stored"]

    r = await client.get("/v1/audit/records", headers=admin, params={"limit": 200})
    assert r.status_code == 200, r.text
    stored = {item["id"]: item for item in r.json()["data"]}
    assert len(stored) == 4
    assert stored[batch[0]["id"]]["record"]["rationale"] == "customer asked"
    await settle(app)
    r = await client.get("/v1/audit/checkpoints", headers=admin)
    assert r.json()["data"][-1]["size"] == 4


async def test_same_id_twice_in_one_batch(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    me = await writer(client, admin)
    one = record()
    assert await send(client, me["headers"], [one, one, dict(one, status="failed")]) == [
        "stored",
        "duplicate",
        "conflict",
    ]


async def test_identity_comes_from_the_token_and_registry(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await writer(client, admin)
    one = record(trace_id=None, traceparent="00-" + "ab" * 16 + "-" + "cd" * 8 + "-01")
    await send(client, me["headers"], [one])
    r = await client.get(f"/v1/audit/records/{one['id']}", headers=admin)
    body = r.json()
    assert body["record"]["agent"] == {
        "id": me["agent"]["id"],
        "name": "refund-bot",
        "version": "1.0.0",
        "model_name": "gpt-test",
        "model_version": "2026-01",
    }
    assert body["record"]["domain"] == "payments"
    assert body["record"]["trace_id"] == "ab" * 16
    # Read at once: the sequencer (every 50 ms here) may have given it its place already or
    # not; until it has, the record has no index and no proof.
    index = body["log"]["index"]
    assert (index is None and body.get("proof") is None) or isinstance(index, int)
    r = await client.get("/v1/audit/records", headers=admin, params={"trace_id": "ab" * 16})
    assert [x["id"] for x in r.json()["data"]] == [one["id"]]


async def test_bad_records_are_refused_naming_the_field(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await writer(client, admin)
    h = {**me["headers"], "Content-Type": "application/json"}

    async def post(raw: str) -> httpx.Response:
        return await client.post("/v1/audit/records", content=raw, headers=h)

    good = json.dumps(record())
    big = json.dumps(record(inputs={"n": 2**53}))
    r = await post('{"records": [' + good + "," + big + "]}")
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["pointer"] == "/body/records/1/inputs/n"
    nan = good.replace('"amount": 40', '"amount": NaN')
    r = await post('{"records": [' + nan + "]}")
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["pointer"] == "/body/records/0/inputs/amount"
    r = await post(json.dumps({"records": [dict(record(), agent_id=str(uuid.uuid4()))]}))
    assert r.status_code == 422
    assert r.json()["errors"][0]["detail"] == "unknown field"
    r = await post(json.dumps({"records": [record(status="done")]}))
    assert r.status_code == 422
    r = await post(json.dumps({"records": [record(timestamp=1764410000)]}))
    assert r.status_code == 422
    # Valid RFC 3339 with no UTC equivalent (past year 9999, before year 1): 422, not a 500.
    for beyond in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00"):
        r = await post(json.dumps({"records": [record(timestamp=beyond)]}))
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["pointer"] == "/body/records/0/timestamp"
    deep: Any = {}
    for _ in range(40):
        deep = {"d": deep}
    r = await post(json.dumps({"records": [record(inputs=deep)]}))
    assert r.status_code == 422
    r = await post(json.dumps({"records": [record() for _ in range(1001)]}))
    assert r.status_code in (413, 422)
    # Nothing of any of these was stored.
    r = await client.get("/v1/audit/records", headers=admin)
    assert r.json()["data"] == []


async def test_bodies_that_are_not_a_json_batch_are_refused(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await writer(client, admin)

    async def post(raw: bytes, content_type: str | None = "application/json") -> httpx.Response:
        h = dict(me["headers"])
        if content_type:
            h["Content-Type"] = content_type
        return await client.post("/v1/audit/records", content=raw, headers=h)

    r = await post(b'{"records": [')
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == "The request body is not valid JSON."
    r = await post(b"")
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["pointer"] == "/body"
    r = await post(json.dumps({"records": [record()]}).encode(), "text/plain")
    assert r.status_code == 422, r.text
    r = await post(b"[]")
    assert r.status_code == 422, r.text
    # Not text json.loads reads, or nested past Python's recursion limit: 400, as FastAPI
    # answers on every other route, not a 500.
    deep = b'{"d":' * 1000 + b"{}" + b"}" * 1000
    deep_inputs = json.dumps({"records": [record(inputs={"x": 0})]}).encode()
    deep_inputs = deep_inputs.replace(b'{"x": 0}', deep)
    for raw in (b'{"records":"\xff"}', b"[" * 1000 + b"]" * 1000, b'{"a":' * 5000, deep_inputs):
        r = await post(raw)
        assert r.status_code == 400, (raw[:20], r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"].startswith("The request body is")
    # A BOM and UTF-16 are JSON that json.loads reads: accepted as before.
    one, two = record(), record()
    r = await post(b"\xef\xbb\xbf" + json.dumps({"records": [one]}).encode())
    assert r.status_code == 200, r.text
    r = await post(json.dumps({"records": [two]}).encode("utf-16"), None)
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["records"]] == ["stored"]
    # Authentication comes before the body is read.
    anonymous = await client.post(
        "/v1/audit/records", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert anonymous.status_code == 401


async def test_scope_and_visibility(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    me = await writer(client, admin)
    from tests.fixtures.decisions import decider

    other = await decider(client, admin, name="reader-bot")  # decisions:create only
    r = await client.post(
        "/v1/audit/records", json={"records": [record()]}, headers=other["headers"]
    )
    assert r.status_code == 403
    one = record()
    await send(client, me["headers"], [one])
    await create_domain(client, admin, "claims")
    r = await client.post(
        "/v1/operators",
        json={"name": "claims-admin", "role": "domain_admin", "domains": ["claims"]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    claims = {"Authorization": f"Bearer {r.json()['token']}"}
    assert (await client.get(f"/v1/audit/records/{one['id']}", headers=claims)).status_code == 404
    r = await client.get("/v1/audit/records", headers=claims)
    assert r.json()["data"] == []
    r = await client.get("/v1/audit/logs/payments/checkpoint", headers=claims)
    assert r.status_code == 404
    assert (await client.get("/v1/audit/records", headers=me["headers"])).status_code == 401


async def test_proofs_checkpoints_and_keys_verify(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await writer(client, admin)
    first = [record() for _ in range(5)]
    await send(client, me["headers"], first)
    await settle(app)
    r = await client.get("/v1/audit/logs/payments/checkpoint", headers=admin)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    old_note = r.text
    second = [record() for _ in range(8)]
    await send(client, me["headers"], second)
    await settle(app)

    keys = (await client.get("/v1/audit/keys", headers=admin)).json()["keys"]
    assert [k["name"] for k in keys] == ["testserver/audit/payments"]
    verifier = Verifier.parse(keys[0]["verifier_key"])
    note = (await client.get("/v1/audit/logs/payments/checkpoint", headers=admin)).text
    cp = open_checkpoint(note, verifier)
    old = open_checkpoint(old_note, verifier)
    assert (old.size, cp.size) == (5, 13)
    assert note.startswith("testserver/audit/payments\n13\n")

    for rec in first + second:
        body = (await client.get(f"/v1/audit/records/{rec['id']}", headers=admin)).json()
        index = body["log"]["index"]
        canonical = b64d(body["log"]["canonical"])
        assert b64d(body["log"]["leaf_hash"]) == leaf_hash(canonical)
        assert json.loads(canonical)["record"] == body["record"]
        assert canonical == leaf_canonical(
            index, json.dumps(body["record"], separators=(",", ":"), sort_keys=True).encode()
        )
        proof = body["proof"]
        assert proof["checkpoint"] == note
        assert proof["size"] == 13
        hashes = [b64d(x) for x in proof["hashes"]]
        assert verify_inclusion(index, 13, leaf_hash(canonical), hashes, cp.root)

    r = await client.get(
        "/v1/audit/logs/payments/proof/consistency",
        params={"from": 5, "to": 13},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    proof = r.json()
    assert (proof["from"], proof["to"]) == (5, 13)
    hashes = [b64d(x) for x in proof["hashes"]]
    assert verify_consistency(5, 13, old.root, cp.root, hashes)
    r = await client.get(
        "/v1/audit/logs/payments/proof/inclusion", params={"index": 3, "size": 5}, headers=admin
    )
    assert r.status_code == 200, r.text
    for bad in ({"index": 5, "size": 5}, {"index": 0, "size": 99}):
        r = await client.get("/v1/audit/logs/payments/proof/inclusion", params=bad, headers=admin)
        assert r.status_code == 422, r.text
    r = await client.get(
        "/v1/audit/logs/payments/proof/consistency", params={"from": 0, "to": 5}, headers=admin
    )
    assert r.status_code == 422
    r = await client.get("/v1/audit/verify", headers=admin)
    assert r.json() == {
        "ok": True,
        "logs": [
            {
                "domain": "payments",
                "size": 13,
                "checkpoint_size": 13,
                "first_bad_index": None,
                "reason": None,
            }
        ],
    }


async def test_export_streams_every_leaf(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await writer(client, admin)
    await send(client, me["headers"], [record() for _ in range(7)])
    await settle(app)
    r = await client.get("/v1/audit/export", params={"domain": "payments"}, headers=admin)
    assert r.status_code == 200
    assert r.headers["x-audit-log-size"] == "7"
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [line["index"] for line in lines] == list(range(7))
    r = await client.get("/v1/audit/export", params={"domain": "nope"}, headers=admin)
    assert r.status_code == 404  # no such domain or log: not an empty export
    assert r.headers["content-type"] == "application/problem+json"


async def test_lone_surrogates_are_carried_as_replacement_characters(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    # Not Unicode text, so RFC 8785 cannot encode it; stored as U+FFFD, as decisions do.
    me = await writer(client, admin)
    one = record(inputs={"note": "lone \ud800 surrogate"})
    h = {**me["headers"], "Content-Type": "application/json"}
    r = await client.post(
        "/v1/audit/records", content=json.dumps({"records": [one]}).encode(), headers=h
    )
    assert r.status_code == 200, r.text
    got = (await client.get(f"/v1/audit/records/{one['id']}", headers=admin)).json()
    assert got["record"]["inputs"]["note"] == "lone \ufffd surrogate"


async def test_a_log_that_does_not_exist_is_not_found_not_an_empty_log_that_verifies(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A misspelt domain is a 404, not ``{"ok": true}`` over zero records."""
    me = await writer(client, admin)
    await send(client, me["headers"], [record()])
    for path, params in (
        ("/v1/audit/verify", {"domain": "paymnets"}),
        ("/v1/audit/export", {"domain": "paymnets"}),
        ("/v1/audit/keys", {"domain": "paymnets"}),
        ("/v1/audit/logs/paymnets/redaction", {}),
        ("/v1/audit/logs/paymnets/proof/inclusion", {"index": 0, "size": 1}),
        ("/v1/audit/logs/paymnets/proof/consistency", {"from": 0, "to": 1}),
    ):
        r = await client.get(path, params=params, headers=admin)
        assert r.status_code == 404, (path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    # Its checkpoint is of no log, not one "not made yet".
    r = await client.get("/v1/audit/logs/paymnets/checkpoint", headers=admin)
    assert (r.status_code, r.json()["detail"]) == (404, "Log not found."), r.text
    # The real one answers.
    r = await client.get("/v1/audit/verify", params={"domain": "payments"}, headers=admin)
    assert r.status_code == 200, r.text
    assert (
        await client.get("/v1/audit/keys", params={"domain": "payments"}, headers=admin)
    ).json()["keys"]


async def test_time_filters_take_rfc_3339_date_times_only(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await writer(client, admin)
    one = record()
    await send(client, me["headers"], [one])

    async def listed(**params: str) -> httpx.Response:
        return await client.get("/v1/audit/records", params=params, headers=admin)

    r = await listed(since="2000-01-01T00:00:00Z", until="2999-01-01T00:00:00+02:00")
    assert [x["id"] for x in r.json()["data"]] == [one["id"]]
    assert (await listed(since="2999-01-01T00:00:00Z")).json()["data"] == []
    # A time without an offset, a bare date or a number says no instant: 422, not a guess.
    for name in ("since", "until"):
        for value in ("2026-11-29T10:00:00", "2026-11-29", "-1", "1796028670"):
            r = await listed(**{name: value})
            assert r.status_code == 422, (name, value, r.text)
            assert r.json()["errors"][0]["pointer"] == f"/query/{name}"

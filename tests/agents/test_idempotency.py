"""Idempotency-Key on POST: replay, conflict on a different body, per-principal namespaces."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlmodel import select

from control_plane.models import IdempotencyRecord
from control_plane.state import app_state
from tests.fixtures.factories import create_domain, create_operator


async def test_replay_returns_identical_response_and_creates_nothing(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await create_domain(client, admin, "payments")
    body = {"name": "refund-bot", "domain": "payments", "owner": "o"}
    h = admin | {"Idempotency-Key": "create-refund-bot-1"}
    first = await client.post("/v1/agents", json=body, headers=h)
    assert first.status_code == 201
    # Key order and whitespace do not make it a different request.
    second = await client.post(
        "/v1/agents",
        content=b'{"owner": "o",  "domain": "payments", "name": "refund-bot"}',
        headers=h | {"Content-Type": "application/json"},
    )
    assert second.status_code == 201
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["idempotent-replayed"] == "true"
    assert len((await client.get("/v1/agents", headers=admin)).json()["data"]) == 1


async def test_same_key_different_body_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await create_domain(client, admin, "payments")
    h = admin | {"Idempotency-Key": "k-1"}
    ok = await client.post(
        "/v1/agents", json={"name": "a", "domain": "payments", "owner": "o"}, headers=h
    )
    assert ok.status_code == 201
    r = await client.post(
        "/v1/agents", json={"name": "b", "domain": "payments", "owner": "o"}, headers=h
    )
    assert r.status_code == 422
    assert r.json()["code"] == "idempotency_key_reused"
    names = [a["name"] for a in (await client.get("/v1/agents", headers=admin)).json()["data"]]
    assert names == ["a"]
    # The same key on another route is also a different request.
    r = await client.post("/v1/domains", json={"name": "claims"}, headers=h)
    assert r.status_code == 422


async def test_keys_of_different_principals_never_collide(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await create_domain(client, admin, "payments")
    other = await create_operator(client, admin, "domain_admin", ["payments"])
    key = {"Idempotency-Key": "shared-key"}
    a = await client.post(
        "/v1/agents", json={"name": "a", "domain": "payments", "owner": "o"}, headers=admin | key
    )
    b = await client.post(
        "/v1/agents", json={"name": "b", "domain": "payments", "owner": "o"}, headers=other | key
    )
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]


async def test_failed_request_is_not_stored(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    h = admin | {"Idempotency-Key": "retry-me"}
    body = {"name": "bot", "domain": "later", "owner": "o"}
    assert (await client.post("/v1/agents", json=body, headers=h)).status_code == 422
    await create_domain(client, admin, "later")
    # The failure changed nothing and was not recorded, so the retry runs for real.
    assert (await client.post("/v1/agents", json=body, headers=h)).status_code == 201


async def test_concurrent_duplicates_create_one(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await create_domain(client, admin, "payments")
    h = admin | {"Idempotency-Key": "race"}
    body = {"name": "racer", "domain": "payments", "owner": "o"}
    responses = await asyncio.gather(
        *(client.post("/v1/agents", json=body, headers=h) for _ in range(10))
    )
    codes = [r.status_code for r in responses]
    assert all(c in (201, 409) for c in codes), [r.text for r in responses]
    assert len({r.json()["id"] for r in responses if r.status_code == 201}) == 1
    assert len((await client.get("/v1/agents", headers=admin)).json()["data"]) == 1


async def test_invalid_key(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.post(
        "/v1/domains", json={"name": "x"}, headers=admin | {"Idempotency-Key": "has space"}
    )
    assert r.status_code == 400
    r = await client.post(
        "/v1/domains", json={"name": "x"}, headers=admin | {"Idempotency-Key": "k" * 300}
    )
    assert r.status_code == 422


async def test_keys_expire_after_the_retention_window(
    app: Any, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    app_state(app).settings = app_state(app).settings.model_copy(
        update={"idempotency_retention_hours": 0.1 / 3600}  # 0.1 s
    )
    h = admin | {"Idempotency-Key": "reused-later"}
    assert (await client.post("/v1/domains", json={"name": "one"}, headers=h)).status_code == 201
    replay = await client.post("/v1/domains", json={"name": "one"}, headers=h)
    assert replay.headers.get("idempotent-replayed") == "true"
    await asyncio.sleep(0.2)
    # Past the window the key is new again: a different body is a new request, not a conflict.
    r = await client.post("/v1/domains", json={"name": "two"}, headers=h)
    assert r.status_code == 201
    assert "idempotent-replayed" not in r.headers


async def test_secrets_are_never_stored_for_replay(
    app: Any, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """A response that shows a secret once (operator token) is not kept in the idempotency
    store; a replay says the request succeeded and points at the result, without the secret."""
    h = admin | {"Idempotency-Key": "make-operator"}
    body = {"name": "ops", "role": "auditor"}
    first = await client.post("/v1/operators", json=body, headers=h)
    assert first.status_code == 201
    token = first.json()["token"]
    replay = await client.post("/v1/operators", json=body, headers=h)
    assert replay.status_code == 409
    assert replay.headers["location"] == first.headers["location"]
    assert token not in replay.text
    async with app_state(app).database.sessionmaker() as session:
        rows = (await session.exec(select(IdempotencyRecord))).all()
    assert rows
    assert all(token not in row.response_body for row in rows)
    assert len((await client.get("/v1/operators", headers=admin)).json()["data"]) == 2

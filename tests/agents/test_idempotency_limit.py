"""A principal holds at most ``idempotency_max_keys`` live Idempotency-Keys: a new key beyond
them answers 429 ``idempotency_key_limit``; the keys it holds keep replaying, and other
principals are not affected."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from control_plane.config import Settings
from tests.fixtures.factories import create_operator


@pytest.fixture
def retention_seconds() -> float:
    return 24 * 3600.0


@pytest.fixture
def settings(settings: Settings, retention_seconds: float) -> Settings:
    return settings.model_copy(
        update={"idempotency_max_keys": 3, "idempotency_retention_hours": retention_seconds / 3600}
    )


async def test_new_keys_beyond_the_limit_are_refused(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    other = await create_operator(client, admin, "platform_admin")
    first = None
    for i in range(3):
        r = await client.post(
            "/v1/domains", json={"name": f"d{i}"}, headers=admin | {"Idempotency-Key": f"k{i}"}
        )
        assert r.status_code == 201, r.text
        first = first or r
    r = await client.post(
        "/v1/domains", json={"name": "d3"}, headers=admin | {"Idempotency-Key": "k3"}
    )
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "idempotency_key_limit"
    # Retry-After: until the oldest key expires (24 h retention by default).
    assert 23 * 3600 < int(r.headers["retry-after"]) <= 24 * 3600
    # Nothing was created by the refused request.
    names = [d["name"] for d in (await client.get("/v1/domains", headers=admin)).json()["data"]]
    assert "d3" not in names
    # The keys already held still replay their answers.
    again = await client.post(
        "/v1/domains", json={"name": "d0"}, headers=admin | {"Idempotency-Key": "k0"}
    )
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert first is not None
    assert again.content == first.content
    # Without a key the request is served; another principal has its own allowance.
    r = await client.post("/v1/domains", json={"name": "d4"}, headers=admin)
    assert r.status_code == 201
    r = await client.post(
        "/v1/domains", json={"name": "d5"}, headers=other | {"Idempotency-Key": "k3"}
    )
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("retention_seconds", [1.0])
async def test_expired_keys_do_not_count(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for i in range(3):
        h = admin | {"Idempotency-Key": f"k{i}"}
        assert (await client.post("/v1/domains", json={"name": f"d{i}"}, headers=h)).is_success
    h = admin | {"Idempotency-Key": "k3"}
    r = await client.post("/v1/domains", json={"name": "d3"}, headers=h)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) == 1
    await asyncio.sleep(1.2)
    assert (await client.post("/v1/domains", json={"name": "d3"}, headers=h)).status_code == 201

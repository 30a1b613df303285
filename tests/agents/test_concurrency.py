"""Optimistic concurrency: N writers holding one ETag, exactly one wins."""

from __future__ import annotations

import asyncio

import httpx

from tests.fixtures.factories import create_agent, create_domain


async def test_fifty_concurrent_updates_with_one_etag(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await create_domain(client, admin, "payments")
    agent = await create_agent(client, admin, "payments")
    url = f"/v1/agents/{agent['id']}"
    etag = (await client.get(url, headers=admin)).headers["etag"]

    async def update(i: int) -> httpx.Response:
        return await client.patch(
            url, json={"description": f"writer {i}"}, headers=admin | {"If-Match": etag}
        )

    responses = await asyncio.gather(*(update(i) for i in range(50)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 1, codes
    assert codes.count(412) == 49, codes
    winner = next(r for r in responses if r.status_code == 200).json()
    # No update is lost: what is stored is exactly what the one successful writer wrote.
    final = await client.get(url, headers=admin)
    assert final.json()["description"] == winner["description"]
    assert final.headers["etag"] == '"2"'


async def test_concurrent_activations_leave_one_active(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await create_domain(client, admin, "payments")
    agent = await create_agent(client, admin, "payments")
    base = f"/v1/agents/{agent['id']}/versions"
    ids = []
    for i in range(5):
        r = await client.post(
            base,
            json={
                "version": f"1.0.{i}",
                "model_name": "m",
                "model_version": "1",
                "artifact_digest": "sha256:" + f"{i:064x}",
            },
            headers=admin,
        )
        ids.append(r.json()["id"])
        await client.post(f"{base}/{ids[-1]}/approve", headers=admin)
    responses = await asyncio.gather(
        *(client.post(f"{base}/{vid}/activate", headers=admin) for vid in ids)
    )
    assert all(r.status_code in (200, 409) for r in responses), [r.text for r in responses]
    states = [v["state"] for v in (await client.get(base, headers=admin)).json()["data"]]
    assert states.count("active") == 1

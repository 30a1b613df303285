"""Who may subscribe, and where webhooks may point (the server's default settings)."""

from __future__ import annotations

import httpx

from tests.fixtures.factories import create_domain, create_operator


async def test_ssrf_refused_by_default(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """The default settings: loopback, link-local and private receivers are refused."""
    for url in (
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[2002:7f00:1::]/hook",  # 6to4 carrying 127.0.0.1
        "ftp://example.com/hook",
        "http://user:pw@example.com/hook",
    ):
        r = await client.post("/v1/webhooks", json={"url": url}, headers=admin)
        assert r.status_code == 422, (url, r.text)
        assert r.json()["errors"][0]["pointer"] == "/body/url"


async def test_who_may_subscribe(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await create_domain(client, admin, "payments")
    payments_admin = await create_operator(client, admin, "domain_admin", ["payments"])
    auditor = await create_operator(client, admin, "auditor")
    body = {"url": "https://hooks.example.com/x"}
    assert (await client.post("/v1/webhooks", json=body, headers=auditor)).status_code == 403
    # A domain admin subscribes to its own domain, never to every domain.
    r = await client.post("/v1/webhooks", json=body, headers=payments_admin)
    assert r.status_code == 403
    bad = await client.post(
        "/v1/webhooks", json={**body, "types": ["nope.v1"], "domain": "payments"}, headers=admin
    )
    assert bad.status_code == 422


async def test_a_domain_that_does_not_exist_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    # A platform_admin sees every domain, but a webhook on a misspelt one would never fire.
    body = {"url": "https://93.184.216.34/hook", "domain": "nosuchdomain"}
    r = await client.post("/v1/webhooks", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["pointer"] == "/body/domain"
    assert (await client.get("/v1/webhooks", headers=admin)).json()["data"] == []

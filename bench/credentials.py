"""Issue 3's figures over HTTP against a real server process:

- token issuance per second at /oauth/token, next to bare signing of the same claims with the
  same library (joserfc), and their ratio;
- the cost of verifying a token on a protected route (/v1/agents/me), with the verified-token
  cache and without it (AGENTCTL_TOKEN_CACHE_SIZE=0).
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
import time
from pathlib import Path

import httpx
from joserfc import jws

from bench.servers import ADMIN, measure, row, server
from control_plane.crypto.jose import JWS_REGISTRY
from control_plane.crypto.signing import generate_signing_key

SECONDS = 3.0
CONCURRENCY = 4


def _bare_signing_rate(seconds: float) -> float:
    key = generate_signing_key("EdDSA")
    claims = (
        b'{"iss":"http://bench.test","sub":"01a20bdc-51ab-77e9-9b40-09e46be6b803",'
        b'"aud":"agent-control-plane","exp":1795495917,"iat":1795495317,'
        b'"jti":"k0oDU4C0FcTtZDkJFc6qFA","client_id":"01a20bdc-51ba-73de-8d26-7296b125ec33",'
        b'"scope":"decisions:create","agent_name":"bot","domain":"payments",'
        b'"autonomy_level":0,"version":null,"version_id":null}'
    )
    header = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
    n = 0
    stop = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < stop:
        jws.serialize_compact(header, claims, key.jose_key, registry=JWS_REGISTRY)
        n += 1
    return n / (time.perf_counter() - start)


async def _setup(url: str) -> tuple[str, str]:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=url, headers=admin) as c:
        await c.post("/v1/domains", json={"name": "bench"})
        agent = (
            await c.post(
                "/v1/agents",
                json={"name": f"bot-{time.time_ns()}", "domain": "bench", "owner": "bench"},
            )
        ).json()
        cred = (
            await c.post(
                f"/v1/agents/{agent['id']}/credentials", json={"scopes": ["decisions:create"]}
            )
        ).json()
    raw = f"{cred['client_id']}:{cred['client_secret']}".encode()
    return "Basic " + base64.b64encode(raw).decode(), cred["client_id"]


async def _issuance(url: str) -> dict[str, float]:
    basic, _ = await _setup(url)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": basic}) as c:

        async def call() -> None:
            r = await c.post("/oauth/token", data={"grant_type": "client_credentials"})
            assert r.status_code == 200, r.text

        await measure(call, seconds=0.5, concurrency=CONCURRENCY)  # warm-up
        return await measure(call, seconds=SECONDS, concurrency=CONCURRENCY)


async def _verify(url: str) -> dict[str, float]:
    basic, _ = await _setup(url)
    async with httpx.AsyncClient(base_url=url) as c:
        r = await c.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": basic},
        )
        bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}

        async def call() -> None:
            r = await c.get("/v1/agents/me", headers=bearer)
            assert r.status_code == 200, r.text

        await measure(call, seconds=0.5, concurrency=CONCURRENCY)
        return await measure(call, seconds=SECONDS, concurrency=CONCURRENCY)


def main() -> None:
    print(f"credentials (issue 3): {CONCURRENCY} concurrent clients, {SECONDS:.0f} s per figure")
    bare = _bare_signing_rate(SECONDS)
    with tempfile.TemporaryDirectory() as tmp:
        with server(Path(tmp) / "cached") as url:
            issued = asyncio.run(_issuance(url))
            cached = asyncio.run(_verify(url))
        with server(Path(tmp) / "uncached", AGENTCTL_TOKEN_CACHE_SIZE="0") as url:  # noqa: S106
            uncached = asyncio.run(_verify(url))
    print(row("POST /oauth/token (client_secret_basic)", issued))
    print(f"  {'bare EdDSA signing, joserfc, one core':<44} {bare:>9.0f}/s")
    print(f"  issuance / bare signing: {issued['rps'] / bare:.4f} ({bare / issued['rps']:.0f}x)")
    print(row("GET /v1/agents/me, token cache on", cached))
    print(row("GET /v1/agents/me, token cache off", uncached))
    saved = uncached["p50_ms"] - cached["p50_ms"]
    print(f"  signature check saved by the cache: {saved:.3f} ms at p50")


if __name__ == "__main__":
    main()

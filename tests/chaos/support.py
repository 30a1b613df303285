"""Load for the chaos tests: agents asking for decisions and operators registering agents against
a real server, each logical request retried with one ``Idempotency-Key`` until it succeeds, as
the SDK does. Every answer is recorded so the tests can say what a client saw, and when."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

ADMIN_TOKEN = "acp_op_chaos-test-admin-token-0123456789abcdef"
KEK = "chaos-test-key-encryption-key-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DECISION = {
    "action": "payments.refund",
    "resource": {"type": "order", "id": "o-1", "amount": 50, "region": "eu-west-1"},
}


def agent_headers(url: str, scopes: tuple[str, ...] = ("decisions:create",)) -> dict[str, str]:
    """Register an agent with an active version and a credential; its bearer token header."""
    with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as c:
        assert c.post("/v1/domains", json={"name": "payments"}).status_code == 201
        agent = c.post(
            "/v1/agents",
            json={"name": "refund-bot", "domain": "payments", "owner": "o", "autonomy_level": 1},
        ).json()
        version = c.post(
            f"/v1/agents/{agent['id']}/versions",
            json={
                "version": "1.0.0",
                "model_name": "m",
                "model_version": "1",
                "artifact_digest": "sha256:" + "ab" * 32,
            },
        ).json()
        for step in ("approve", "activate"):
            r = c.post(f"/v1/agents/{agent['id']}/versions/{version['id']}/{step}")
            assert r.status_code == 200, r.text
        cred = c.post(f"/v1/agents/{agent['id']}/credentials", json={"scopes": list(scopes)}).json()
    basic = base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}".encode()).decode()
    r = httpx.post(
        f"{url}/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@dataclass
class Answer:
    at: float  # time.monotonic() when the answer arrived
    path: str
    status: int
    retry_after: str | None
    content_type: str
    code: str | None


@dataclass
class Load:
    url: str
    agent: dict[str, str]
    answers: list[Answer] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)  # ids of acknowledged decisions
    agents: list[str] = field(default_factory=list)  # ids of acknowledged registrations
    retry_pause: float = 0.2  # the Retry-After a real client honours, shortened for the test

    async def _until_ok(self, client: httpx.AsyncClient, path: str, **kw: Any) -> Any:
        key = uuid.uuid4().hex
        headers = {**kw.pop("headers"), "Idempotency-Key": key}
        while True:
            r = await client.post(path, headers=headers, **kw)
            code = None
            if r.headers.get("content-type") == "application/problem+json":
                code = r.json().get("code")
            self.answers.append(
                Answer(
                    time.monotonic(),
                    path,
                    r.status_code,
                    r.headers.get("retry-after"),
                    r.headers.get("content-type", ""),
                    code,
                )
            )
            if r.status_code in (200, 201):
                return r.json()
            await asyncio.sleep(self.retry_pause)

    async def _decide(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            body = await self._until_ok(client, "/v1/decisions", json=DECISION, headers=self.agent)
            self.decisions.append(body["decision_id"])

    async def _register(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            name = f"bot-{uuid.uuid4().hex[:12]}"
            body = await self._until_ok(
                client,
                "/v1/agents",
                json={"name": name, "domain": "payments", "owner": "o"},
                headers=ADMIN,
            )
            self.agents.append(body["id"])
            await asyncio.sleep(0.05)

    async def run(self, stop: asyncio.Event, deciders: int = 3) -> None:
        """Drive load until ``stop`` is set; every logical request started is finished."""
        limits = httpx.Limits(max_connections=deciders + 1)
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits) as client:
            await asyncio.gather(
                self._register(client, stop), *(self._decide(client, stop) for _ in range(deciders))
            )


def assert_only_ok_or_503(answers: list[Answer]) -> None:
    """Every answer was a success or a 503 problem+json a client can retry after Retry-After."""
    statuses = {a.status for a in answers}
    assert 500 not in statuses
    for a in answers:
        if a.status in (200, 201):
            continue
        assert a.status == 503, a
        assert a.content_type == "application/problem+json", a
        assert a.code == "database_unavailable", a
        assert a.retry_after is not None, a
        assert int(a.retry_after) >= 1, a

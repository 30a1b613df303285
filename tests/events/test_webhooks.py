"""Webhooks as a receiver sees them: signed, retried, dead-lettered, redelivered; SSRF refused."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook as Verifier

from control_plane.config import Settings
from tests.fixtures.factories import create_agent, create_domain


class Receiver:
    """A real HTTP endpoint: fails the first ``failures`` attempts of each message id."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: dict[str, int] = {}
        self.accepted: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                msg_id = self.headers["webhook-id"]
                receiver.attempts[msg_id] = receiver.attempts.get(msg_id, 0) + 1
                ok = receiver.attempts[msg_id] > receiver.failures
                if ok:
                    receiver.accepted.append((dict(self.headers.items()), body))
                self.send_response(204 if ok else 500)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.server.shutdown()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Loopback receivers allowed, fast retries, three attempts."""
    return settings.model_copy(
        update={
            "webhook_allow_private": True,
            "events_poll_seconds": 0.05,
            "webhook_backoff_seconds": 0.05,
            "webhook_max_attempts": 3,
        }
    )


async def _wait(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _subscribe(
    client: httpx.AsyncClient, admin: dict[str, str], url: str, **extra: Any
) -> dict[str, Any]:
    r = await client.post("/v1/webhooks", json={"url": url, **extra}, headers=admin)
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, Any] = r.json()
    return body


async def test_fails_twice_then_delivered_signed(
    client: httpx.AsyncClient, admin: dict[str, str], receivers: list[Receiver]
) -> None:
    receiver = Receiver(failures=2)
    receivers.append(receiver)
    await create_domain(client, admin, "payments")
    hook = await _subscribe(
        client, admin, receiver.url, types=["agent.registered.v1"], domain="payments"
    )
    assert hook["secret"].startswith("whsec_")
    assert "secret" not in (await client.get(f"/v1/webhooks/{hook['id']}", headers=admin)).json()
    agents = [await create_agent(client, admin, "payments") for _ in range(3)]
    await _wait(lambda: len(receiver.accepted) == 3)

    verifier = Verifier(hook["secret"])
    got = []
    for headers, body in receiver.accepted:
        event = verifier.verify(body, headers)  # raises on a bad signature
        assert headers["webhook-id"] == event["id"]
        got.append(event["data"]["agent_id"])
    assert sorted(got) == sorted(a["id"] for a in agents)
    assert all(n == 3 for n in receiver.attempts.values())
    tampered = dict(receiver.accepted[0][0])
    with pytest.raises(Exception, match="signature"):
        verifier.verify(receiver.accepted[0][1] + b" ", tampered)

    url = f"/v1/webhooks/{hook['id']}/deliveries"
    deadline = time.monotonic() + 10
    while True:  # the dispatcher records the outcome just after the receiver answered
        deliveries = (await client.get(url, headers=admin)).json()["data"]
        if all(d["state"] == "delivered" for d in deliveries) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert [(d["state"], d["attempts"]) for d in deliveries] == [("delivered", 3)] * 3


async def test_dead_letter_and_redelivery(
    client: httpx.AsyncClient, admin: dict[str, str], receivers: list[Receiver]
) -> None:
    receiver = Receiver(failures=3)  # as many as the attempts allowed: dead
    receivers.append(receiver)
    # Only the registration: its audit record's checkpoint (audit.checkpoint.v1) would race it.
    hook = await _subscribe(client, admin, receiver.url, types=["agent.registered.v1"])
    await create_domain(client, admin, "payments")
    await create_agent(client, admin, "payments")
    url = f"/v1/webhooks/{hook['id']}/deliveries"

    async def dead() -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = (
            await client.get(url, params={"state": "dead"}, headers=admin)
        ).json()["data"]
        return data

    deadline = time.monotonic() + 15
    while not (found := await dead()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert found[0]["attempts"] == 3
    assert found[0]["last_error"] == "HTTP 500"
    assert receiver.accepted == []

    r = await client.post(f"{url}/{found[0]['id']}/redeliver", headers=admin)
    assert r.status_code == 200
    assert (r.json()["state"], r.json()["attempts"]) == ("pending", 0)
    await _wait(lambda: len(receiver.accepted) == 1)
    assert receiver.accepted[0][0]["webhook-id"] == found[0]["event_id"]

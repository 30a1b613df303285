"""DNS rebinding: a webhook's name that answers a public address when registered and 127.0.0.1
when the delivery connects is refused at connect time; no request reaches the local receiver.

The app resolves webhook hosts through ``tests.fixtures.egress.Answers`` (``create_app``'s
``resolver``), which the test changes between registration and delivery as a rebinding DNS
server would; vetting, connection, delivery records and the receiver are real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook as Verifier

from control_plane.app import create_app
from control_plane.config import Settings
from tests.conftest import _bootstrap
from tests.fixtures.egress import Answers, Receiver
from tests.fixtures.factories import create_agent, create_domain

NAME = "hooks.rebind.test"
PUBLIC = "93.184.216.34"  # answered at registration only: never connected to
# The agent registration also grows the domain's audit log, whose first checkpoint emits
# audit.checkpoint.v1 moments later: subscribed to everything, the counts below would race it.
ONLY = ["agent.registered.v1"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@asynccontextmanager
async def _serving(
    settings: Settings, answers: Answers, allow_private: bool
) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings.model_copy(
        update={
            "webhook_allow_private": allow_private,
            "events_poll_seconds": 0.05,
            "webhook_backoff_seconds": 0.05,
            "webhook_max_attempts": 2,
        }
    )
    await _bootstrap(settings)
    app = create_app(settings, resolver=answers)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def _deliveries(
    client: httpx.AsyncClient, admin: dict[str, str], hook: str, state: str
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        r = await client.get(f"/v1/webhooks/{hook}/deliveries", headers=admin)
        data: list[dict[str, Any]] = r.json()["data"]
        if data and all(d["state"] == state for d in data):
            return data
        assert time.monotonic() < deadline, data
        await asyncio.sleep(0.05)


async def test_rebinding_to_loopback_refused_at_connect(
    settings: Settings, admin: dict[str, str], receiver: Receiver
) -> None:
    answers = Answers()
    answers.answers[NAME] = [PUBLIC]
    async with _serving(settings, answers, allow_private=False) as client:
        url = f"http://{NAME}:{receiver.port}/hook"
        r = await client.post("/v1/webhooks", json={"url": url, "types": ONLY}, headers=admin)
        assert r.status_code == 201, r.text  # the check saw a public address
        answers.answers[NAME] = ["127.0.0.1"]  # the rebinding
        await create_domain(client, admin, "payments")
        await create_agent(client, admin, "payments")  # agent.registered.v1, to deliver

        dead = await _deliveries(client, admin, r.json()["id"], "dead")
    assert [(d["attempts"], d["last_status"], d["last_error"]) for d in dead] == [
        (2, None, "url refused: resolves to a loopback, link-local, private or reserved address")
    ]
    assert receiver.requests == []
    # Registration looked the name up once, then each attempt once, when connecting.
    assert answers.asked == [NAME, NAME, NAME]


async def test_allowed_private_receiver_gets_the_delivery(
    settings: Settings, admin: dict[str, str], receiver: Receiver
) -> None:
    answers = Answers()
    answers.answers[NAME] = ["127.0.0.1"]
    async with _serving(settings, answers, allow_private=True) as client:
        url = f"http://{NAME}:{receiver.port}/hook"
        r = await client.post("/v1/webhooks", json={"url": url, "types": ONLY}, headers=admin)
        assert r.status_code == 201, r.text
        await create_domain(client, admin, "payments")
        await create_agent(client, admin, "payments")
        delivered = await _deliveries(client, admin, r.json()["id"], "delivered")
    assert [(d["attempts"], d["last_status"]) for d in delivered] == [(1, 204)]
    assert len(receiver.requests) == 1
    host, headers, body = receiver.requests[0]
    assert host == f"{NAME}:{receiver.port}"
    event = Verifier(r.json()["secret"]).verify(body, headers)
    assert event["id"] == headers["webhook-id"] == delivered[0]["event_id"]

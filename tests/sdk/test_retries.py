"""Retry timing and fault shapes, with ``httpx.MockTransport``: the one place a handler plays
the server, because a real one cannot be made to answer 503 three times, then 200, on cue.
Everything else in tests/sdk runs against a real ``agentctl serve``."""

from __future__ import annotations

import asyncio
import email.utils
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_sdk import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    BadRequestError,
    Client,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    Unavailable,
    UnprocessableEntityError,
)
from agent_sdk._base_client import BaseClient

DECISION = {
    "decision_id": str(uuid.uuid4()),
    "effect": "allow",
    "allow": True,
    "reasons": [],
    "obligations": [],
    "bundle": "default",
    "revision": 1,
    "engine": "wasm",
}
RESOURCE = {"type": "order", "id": "o-1"}

Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """Scripted answers for ``/v1/decisions``; a token for ``/oauth/token``."""

    def __init__(self, answers: list[httpx.Response | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[float, httpx.Request]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t0k3n", "expires_in": 600})
        self.calls.append((time.monotonic(), request))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def gaps(self) -> list[float]:
        return [b[0] - a[0] for a, b in zip(self.calls, self.calls[1:], strict=False)]


def problem(status: int, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "type": f"https://errors/{code}",
            "title": code,
            "status": status,
            "code": code,
            "detail": f"detail of {code}",
        },
        headers={"content-type": "application/problem+json", "x-request-id": "req-1", **headers},
    )


@pytest.fixture(params=["sync", "async"])
def decide(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    """``await decide(server, **options)``: one ``decide()`` through a client of each kind."""

    async def run(server: Server, **options: Any) -> Any:
        options = {"backoff_cap": 0.02, "outbox_path": tmp_path / "o.db", **options}
        transport_sync = httpx.MockTransport(server)
        if request.param == "sync":
            with Client(
                "http://cp.test",
                "c1",
                "s1",
                http_client=httpx.Client(transport=transport_sync),
                **options,
            ) as client:
                return await asyncio.to_thread(client.decide, "payments.refund", RESOURCE)
        async with AsyncClient(
            "http://cp.test",
            "c1",
            "s1",
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(server)),
            **options,
        ) as aclient:
            return await aclient.decide("payments.refund", RESOURCE)

    return run


async def test_retries_reuse_one_idempotency_key(decide: Any) -> None:
    server = Server(
        [
            problem(503, "unavailable"),
            problem(502, "bad_gateway"),
            httpx.Response(200, json=DECISION),
        ]
    )
    decision = await decide(server)
    assert decision.allow
    keys = [r.headers["idempotency-key"] for _, r in server.calls]
    assert len(keys) == 3
    assert len(set(keys)) == 1
    bodies = {r.content for _, r in server.calls}
    assert len(bodies) == 1
    other = Server([httpx.Response(200, json=DECISION)])
    await decide(other)
    assert other.calls[0][1].headers["idempotency-key"] != keys[0]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (422, UnprocessableEntityError),
        (409, ConflictError),
    ],
)
async def test_no_retry_on_client_errors(decide: Any, status: int, error: type) -> None:
    server = Server([problem(status, "nope")])
    with pytest.raises(error) as caught:
        await decide(server)
    assert len(server.calls) == 1
    assert caught.value.status_code == status
    assert caught.value.code == "nope"
    assert caught.value.detail == "detail of nope"
    assert caught.value.type == "https://errors/nope"
    assert caught.value.request_id == "req-1"


async def test_409_idempotency_key_in_use_is_retried(decide: Any) -> None:
    server = Server([problem(409, "idempotency_key_in_use"), httpx.Response(200, json=DECISION)])
    assert (await decide(server)).allow
    assert len(server.calls) == 2


@pytest.mark.parametrize("status", [408, 429, 500, 503, 504])
async def test_transient_statuses_are_retried(decide: Any, status: int) -> None:
    server = Server([problem(status, "later"), httpx.Response(200, json=DECISION)])
    assert (await decide(server)).allow
    assert len(server.calls) == 2


async def test_retry_after_is_honoured(decide: Any) -> None:
    server = Server(
        [problem(429, "slow_down", **{"Retry-After": "0.4"}), httpx.Response(200, json=DECISION)]
    )
    await decide(server)
    assert server.gaps()[0] >= 0.4


async def test_retry_after_as_http_date(decide: Any) -> None:
    when = email.utils.formatdate(time.time() + 1.5, usegmt=True)
    server = Server(
        [problem(503, "later", **{"Retry-After": when}), httpx.Response(200, json=DECISION)]
    )
    await decide(server, retry_after_cap=5)
    assert 0.3 <= server.gaps()[0] <= 5  # an HTTP date has one-second resolution


async def test_retry_after_is_capped(decide: Any) -> None:
    server = Server(
        [problem(503, "later", **{"Retry-After": "3600"}), httpx.Response(200, json=DECISION)]
    )
    await decide(server, retry_after_cap=0.2)
    assert server.gaps()[0] < 2


async def test_total_time_is_bounded(decide: Any) -> None:
    server = Server([problem(503, "down", **{"Retry-After": "60"})])
    started = time.monotonic()
    with pytest.raises(InternalServerError) as caught:
        await decide(server, max_retries=3, retry_after_cap=0.1)
    assert len(server.calls) == 4
    assert time.monotonic() - started < 3
    assert caught.value.status_code == 503


async def test_rate_limit_after_the_retries(decide: Any) -> None:
    server = Server([problem(429, "slow_down")])
    with pytest.raises(RateLimitError):
        await decide(server, max_retries=1)
    assert len(server.calls) == 2


async def test_connect_errors_and_timeouts(decide: Any) -> None:
    server = Server([httpx.ConnectError("refused"), httpx.Response(200, json=DECISION)])
    assert (await decide(server)).allow
    assert len(server.calls) == 2
    timeouts = Server([httpx.ReadTimeout("slow")])
    with pytest.raises(APITimeoutError):
        await decide(timeouts, max_retries=1)
    assert len(timeouts.calls) == 2
    refused = Server([httpx.ConnectError("refused")])
    with pytest.raises(APIConnectionError):
        await decide(refused, max_retries=0)


async def test_models_tolerate_new_server_fields(decide: Any) -> None:
    server = Server([httpx.Response(200, json={**DECISION, "new_field": {"x": 1}})])
    decision = await decide(server)
    assert decision.allow
    assert not hasattr(decision, "new_field")


def test_breaker_fails_fast_then_probes_once(tmp_path: Path) -> None:
    server = Server([problem(503, "down")])
    client = Client(
        "http://cp.test",
        "c1",
        "s1",
        outbox_path=tmp_path / "o.db",
        max_retries=0,
        breaker_threshold=3,
        breaker_cooldown=0.3,
        http_client=httpx.Client(transport=httpx.MockTransport(server)),
    )
    for _ in range(3):
        with pytest.raises(InternalServerError):
            client.decide("payments.refund", RESOURCE)
    with pytest.raises(Unavailable) as caught:
        client.decide("payments.refund", RESOURCE)
    assert 0 < caught.value.retry_after <= 0.3
    assert len(server.calls) == 3  # failed fast: nothing sent
    time.sleep(0.35)
    server.answers = [httpx.Response(200, json=DECISION)]
    assert client.decide("payments.refund", RESOURCE).allow
    assert client._breaker.state == "closed"
    client.close()


def test_backoff_is_full_jitter_and_capped(tmp_path: Path) -> None:
    core = BaseClient(
        "http://cp.test", "c1", "s1", outbox_path=tmp_path / "o.db", backoff_base=0.5, backoff_cap=4
    )
    delays = [core._retry_delay(attempt, None) for attempt in range(10) for _ in range(50)]
    assert all(0 <= d <= 4 for d in delays)
    assert max(delays) > 2  # reaches toward the cap
    assert min(delays) < 0.1  # full jitter starts near zero
    first = [core._retry_delay(0, None) for _ in range(200)]
    assert max(first) <= 0.5

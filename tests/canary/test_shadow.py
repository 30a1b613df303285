"""Shadow evaluation over HTTP: answers unchanged, differences stored once, listed, summarised,
counted; every change an audit record and an event."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs

from control_plane.app import create_app
from control_plane.config import Settings
from control_plane.kit.time import utcnow
from control_plane.policy.shadow import ShadowEvaluator, ShadowJob
from control_plane.state import app_state
from tests.canary.helpers import BUNDLE, push_deny_all
from tests.conftest import _bootstrap
from tests.fixtures.decisions import REFUND, decider
from tests.fixtures.events import events_until


async def _diffs(
    client: httpx.AsyncClient, admin: dict[str, str], want: int, **params: Any
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        r = await client.get(f"{BUNDLE}/shadow/diffs", params=params, headers=admin)
        assert r.status_code == 200, r.text
        data: list[dict[str, Any]] = r.json()["data"]
        if len(data) >= want or time.monotonic() > deadline:
            return data
        await asyncio.sleep(0.05)


async def _settled(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    """A decision once the engine holds the active revision (a first load on a loaded machine
    can outlast the load bound, and that decision is an engine_not_loaded deny)."""
    for _ in range(50):
        answer: dict[str, Any] = (
            await client.post("/v1/decisions", json=REFUND, headers=headers)
        ).json()
        if not any(r.startswith("engine_not_loaded") for r in answer["reasons"]):
            return answer
        await asyncio.sleep(0.2)
    raise AssertionError("the engine never loaded")


async def _metric(client: httpx.AsyncClient, admin: dict[str, str], outcome: str) -> float:
    text = (await client.get("/metrics", headers=admin)).text
    name = f'agentctl_shadow_evaluations_total{{outcome="{outcome}"}}'
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    return values[0] if values else 0.0


@pytest.mark.usefixtures("opa_bin")
async def test_shadow_never_changes_the_answer_and_records_each_difference(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    bot = await decider(client, admin)
    before = await _settled(client, bot["headers"])
    shadow = await push_deny_all(client, admin)
    r = await client.put(f"{BUNDLE}/shadow", json={"revision": shadow}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["shadow_revision"] == shadow
    assert r.json()["active_revision"] == 1

    answers = []
    for _ in range(3):
        r = await client.post("/v1/decisions", json=REFUND, headers=bot["headers"])
        assert r.status_code == 200, r.text
        answers.append(r.json())
    for answer in answers:  # exactly what the active revision answers without a shadow
        assert answer["effect"] == before["effect"]
        assert answer["reasons"] == before["reasons"]
        assert answer["revision"] == 1
        assert answer["served_by"] == "active"

    diffs = await _diffs(client, admin, 3)
    assert sorted(d["decision_id"] for d in diffs) == sorted(a["decision_id"] for a in answers)
    for d in diffs:
        assert d["shadow_revision"] == shadow
        assert d["revision"] == 1
        assert d["action"] == REFUND["action"]
        assert d["agent_id"] == bot["agent"]["id"]
        assert d["domain"] == "payments"
        assert d["old_effect"] == before["effect"]
        assert d["new_effect"] == "deny"
        assert d["new_reasons"] == ["maintenance"]

    # Keyset pages, like every list.
    first = (await client.get(f"{BUNDLE}/shadow/diffs?limit=2", headers=admin)).json()
    assert first["has_more"] is True
    rest = await client.get(
        f"{BUNDLE}/shadow/diffs", params={"after": first["next_after"]}, headers=admin
    )
    assert [d["id"] for d in first["data"] + rest.json()["data"]] == [d["id"] for d in diffs]

    summary = (await client.get(f"{BUNDLE}/shadow/summary", headers=admin)).json()
    assert summary["total"] == 3
    assert summary["changes"] == [
        {"action": REFUND["action"], "change": f"{before['effect']}->deny", "count": 3}
    ]
    assert await _metric(client, admin, "different") >= 3

    # The same difference evaluated again (a retry, a second worker) is stored once.
    evaluator = app_state(app).shadow_evaluator
    again = ShadowJob(
        decision_id=uuid.UUID(diffs[0]["decision_id"]),
        bundle="default",
        revision=1,
        shadow_revision=shadow,
        action=REFUND["action"],
        agent_id=uuid.UUID(bot["agent"]["id"]),
        domain="payments",
        input_doc={"action": REFUND["action"]},
        encoded='{"action":"payments.refund"}',
        effect=before["effect"],
        reasons=tuple(before["reasons"]),
        decided_at=utcnow(),
    )
    await evaluator.submit(again)
    await evaluator.drain()
    assert len(await _diffs(client, admin, 4)) == 3

    # Cleared: decisions go on, nothing more is evaluated.
    r = await client.delete(f"{BUNDLE}/shadow", headers=admin)
    assert r.json()["shadow_revision"] is None
    await client.post("/v1/decisions", json=REFUND, headers=bot["headers"])
    await evaluator.drain()
    assert len(await _diffs(client, admin, 4)) == 3


@pytest.mark.usefixtures("opa_bin")
async def test_a_shadow_equal_to_the_answer_stores_nothing(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    bot = await decider(client, admin)
    await _settled(client, bot["headers"])
    await client.put(f"{BUNDLE}/shadow", json={"revision": 1}, headers=admin)
    for _ in range(2):
        assert (
            await client.post("/v1/decisions", json=REFUND, headers=bot["headers"])
        ).status_code == 200
    deadline = time.monotonic() + 10
    while await _metric(client, admin, "same") < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await _metric(client, admin, "same") >= 2
    assert await _diffs(client, admin, 1) == []


async def test_a_full_queue_drops_counts_and_logs_without_waiting(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    state = app_state(app)
    evaluator = ShadowEvaluator(state.database, state.policy_runtime, size=1)  # not started
    job = _job(uuid.uuid4(), shadow=1, effect="deny", reasons=())
    dropped = await _metric(client, admin, "dropped")
    started = time.perf_counter()
    with capture_logs() as logs:
        for _ in range(3):
            await evaluator.submit(job)
    assert time.perf_counter() - started < 1  # never blocks (a bound, not a speed figure)
    assert await _metric(client, admin, "dropped") == dropped + 2
    # Said once, not once per drop (at most every few seconds, with the count since).
    full = [e for e in logs if e["event"] == "shadow_queue_full"]
    assert len(full) == 1
    assert full[0]["log_level"] == "warning"
    assert full[0]["dropped"] == 1
    assert full[0]["queue_size"] == 1


@pytest.mark.usefixtures("opa_bin")
async def test_a_stop_right_after_the_decisions_still_records_every_difference(
    settings: Settings, admin: dict[str, str]
) -> None:
    """Shutdown drains the queue: differences not yet written when the server is told to stop
    (they wait up to a second to be written together) are written before it exits."""
    await _bootstrap(settings)
    first = create_app(settings)
    async with first.router.lifespan_context(first), _client(first) as c:
        bot = await decider(c, admin)
        await _settled(c, bot["headers"])
        shadow = await push_deny_all(c, admin)
        await c.put(f"{BUNDLE}/shadow", json={"revision": shadow}, headers=admin)
        ids = []
        for _ in range(5):
            r = await c.post("/v1/decisions", json=REFUND, headers=bot["headers"])
            assert r.status_code == 200, r.text
            ids.append(r.json()["decision_id"])
    # Stopped at once; started again on the same database.
    again = create_app(settings)
    async with again.router.lifespan_context(again), _client(again) as c:
        r = await c.get(f"{BUNDLE}/shadow/diffs", headers=admin)
        assert sorted(d["decision_id"] for d in r.json()["data"]) == sorted(ids)
        # A job handed over after the stop is dropped and counted, never written.
        evaluator = app_state(again).shadow_evaluator
        await evaluator.aclose()
        dropped = await _metric(c, admin, "dropped")
        await evaluator.submit(_job(uuid.uuid4(), shadow=shadow, effect="allow", reasons=()))
        assert await _metric(c, admin, "dropped") == dropped + 1


def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def _job(decision: uuid.UUID, *, shadow: int, effect: str, reasons: tuple[str, ...]) -> ShadowJob:
    return ShadowJob(
        decision_id=decision,
        bundle="default",
        revision=1,
        shadow_revision=shadow,
        action="a",
        agent_id=uuid.uuid4(),
        domain="payments",
        input_doc={},
        encoded="{}",
        effect=effect,
        reasons=reasons,
        decided_at=utcnow(),
    )


@pytest.mark.usefixtures("opa_bin")
async def test_shadow_changes_are_audited_and_announced(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    shadow = await push_deny_all(client, admin)
    await client.put(f"{BUNDLE}/shadow", json={"revision": shadow}, headers=admin)
    await client.put(f"{BUNDLE}/shadow", json={"revision": shadow}, headers=admin)  # no change
    await client.delete(f"{BUNDLE}/shadow", headers=admin)
    types = ("policy.shadow.set.v1", "policy.shadow.cleared.v1")
    events = await events_until(
        client, admin, lambda evs: all(any(e["type"] == t for e in evs) for t in types)
    )
    mine = [e for e in events if e["type"] in types]
    assert [e["type"] for e in mine] == list(types)
    assert mine[0]["data"]["revision"] == shadow
    r = await client.get("/v1/audit/records", params={"domain": "platform"}, headers=admin)
    actions = [rec["action"] for rec in r.json()["data"]]
    assert actions == ["policy.shadow.set", "policy.shadow.cleared"]


async def test_bad_shadow_requests_are_problems(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.put(f"{BUNDLE}/shadow", json={"revision": 99}, headers=admin)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    r = await client.put("/v1/policies/nothing/shadow", json={"revision": 1}, headers=admin)
    assert r.status_code == 404
    r = await client.put(f"{BUNDLE}/shadow", json={"revision": 0}, headers=admin)
    assert r.status_code == 422
    r = await client.get(f"{BUNDLE}/shadow/diffs", params={"after": "x"}, headers=admin)
    assert r.status_code == 422
    r = await client.put(f"{BUNDLE}/shadow", json={"revision": 1})
    assert r.status_code == 401

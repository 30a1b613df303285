"""The event outbox as consumers read it: every change once, in order, resumable."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest

from control_plane.config import Settings
from tests.fixtures.decisions import REFUND, decider
from tests.fixtures.events import events_until
from tests.fixtures.servers import server_env, serving

SCHEMAS = Path(__file__).parents[2] / "openapi" / "events"


def _validate(event: dict[str, Any]) -> None:
    schema = json.loads((SCHEMAS / f"{event['type']}.json").read_text())
    jsonschema_rs.Draft202012Validator(schema).validate(event)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A fast checkpointer: its events settle within a test's patience."""
    return settings.model_copy(update={"audit_checkpoint_seconds": 0.2})


async def test_every_change_once_and_resumable(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin)  # registered, version activated, credential created
    agent_id = me["agent"]["id"]
    denied = copy.deepcopy(REFUND)
    denied["resource"]["region"] = "mars-1"
    await client.post("/v1/decisions", json=denied, headers=me["headers"])
    big = copy.deepcopy(REFUND)
    big["resource"]["amount"] = 500
    approval = (await client.post("/v1/decisions", json=big, headers=me["headers"])).json()
    await client.post(f"/v1/approvals/{approval['approval_id']}/approve", headers=admin)
    await client.put(f"/v1/agents/{agent_id}/budget", json={"actions_per_minute": 0}, headers=admin)
    await client.post("/v1/decisions", json=REFUND, headers=me["headers"])  # budget_exceeded
    creds = (await client.get(f"/v1/agents/{agent_id}/credentials", headers=admin)).json()["data"]
    await client.post(
        f"/v1/agents/{agent_id}/credentials/{creds[0]['client_id']}/revoke", headers=admin
    )
    # Already active (the bootstrap activated it, one event): no change, no event.
    await client.post("/v1/policies/default/revisions/1/activate", headers=admin)
    await client.post(f"/v1/agents/{agent_id}/suspend", headers=admin)

    want = {
        "agent.registered.v1": 1,
        "agent.version.activated.v1": 1,
        "credential.created.v1": 1,
        "decision.denied.v1": 2,  # the residency deny and the budget refusal
        "approval.requested.v1": 1,
        "approval.resolved.v1": 1,
        "budget.exceeded.v1": 1,
        "credential.revoked.v1": 1,
        "policy.revision.activated.v1": 1,
        "agent.suspended.v1": 1,
    }

    def complete(events: list[dict[str, Any]]) -> bool:
        seen = Counter(e["type"] for e in events)
        return all(seen[t] >= n for t, n in want.items())

    events = await events_until(client, admin, complete, timeout=5)
    seen = Counter(e["type"] for e in events if e["type"] != "audit.checkpoint.v1")
    assert seen == want
    assert len({e["id"] for e in events}) == len(events)
    for event in events:
        _validate(event)
        assert event["specversion"] == "1.0"

    # Paging two at a time from any cursor gives the same sequence: nothing missed, no repeat.
    paged: list[dict[str, Any]] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if after:
            params["after"] = after
        page = (await client.get("/v1/events", params=params, headers=admin)).json()
        paged += page["data"]
        after = page["next_after"]
        if not page["has_more"]:
            break
    assert [e["id"] for e in paged][: len(events)] == [e["id"] for e in events]
    middle = events[5]["cursor"]
    rest = (
        await client.get("/v1/events", params={"after": middle, "limit": 500}, headers=admin)
    ).json()["data"]
    assert [e["id"] for e in rest][: len(events) - 6] == [e["id"] for e in events[6:]]

    only = (
        await client.get("/v1/events", params={"type": "approval.requested.v1"}, headers=admin)
    ).json()["data"]
    assert [e["data"]["approval_id"] for e in only] == [approval["approval_id"]]
    bad = await client.get("/v1/events", params={"after": "nope"}, headers=admin)
    assert bad.status_code == 422
    # A cursor past the newest event would skip everything until the log caught up: refused,
    # for a page and for a stream alike. The audit checkpointer writes events of its own in the
    # background; once every audit record is under a checkpoint nothing more comes.
    records = (await client.get("/v1/audit/records", params={"limit": 200}, headers=admin)).json()[
        "data"
    ]

    def settled(events: list[dict[str, Any]]) -> bool:
        sizes = [e["data"]["size"] for e in events if e["type"] == "audit.checkpoint.v1"]
        return complete(events) and max(sizes, default=0) == len(records)

    events = await events_until(client, admin, settled, timeout=10)
    assert settled(events)
    newest = events[-1]["cursor"]
    txid, seq = (int(part) for part in newest.split("-"))
    for future in (f"{txid}-{seq + 1000}", f"{txid + 1000}-0"):
        bad = await client.get("/v1/events", params={"after": future}, headers=admin)
        assert bad.status_code == 422, bad.text
        assert bad.json()["errors"][0]["pointer"] == "/query/after"
        stream = {**admin, "Accept": "text/event-stream", "Last-Event-ID": future}
        bad = await client.get("/v1/events", headers=stream)
        assert bad.status_code == 422, bad.text
        assert bad.json()["errors"][0]["pointer"] == "/header/Last-Event-ID"
    r = await client.get("/v1/events", params={"after": newest}, headers=admin)
    assert r.status_code == 200  # the newest itself is a cursor handed out
    assert newest not in [e["cursor"] for e in r.json()["data"]]
    bad = await client.get("/v1/events", params={"type": "x.v1"}, headers=admin)
    assert bad.status_code == 422


async def test_events_follow_operator_scope(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    from tests.fixtures.factories import create_domain, create_operator

    await decider(client, admin)
    await create_domain(client, admin, "claims")
    claims_admin = await create_operator(client, admin, "domain_admin", ["claims"])
    approver = await create_operator(client, admin, "approver", ["payments"])
    assert (await client.get("/v1/events", headers=claims_admin)).json()["data"] == []
    assert (await client.get("/v1/events", headers=approver)).status_code == 403
    assert (await client.get("/v1/events")).status_code == 401


def _read_sse(url: str, headers: dict[str, str], count: int, out: list[dict[str, Any]]) -> None:
    """Read ``count`` events from the stream, then disconnect."""
    with httpx.stream(
        "GET",
        f"{url}/v1/events",
        params={"type": "agent.registered.v1"},
        headers={**headers, "Accept": "text/event-stream"},
        timeout=30,
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event: dict[str, str] = {}
        for line in r.iter_lines():
            if line.startswith(("id:", "event:", "data:")):
                key, _, value = line.partition(":")
                event[key] = value.strip()
            elif line == "" and "data" in event:
                doc = json.loads(event["data"])
                assert doc["cursor"] == event["id"]
                assert doc["type"] == event["event"]
                out.append(doc)
                event = {}
                if len(out) >= count:
                    return


@pytest.mark.parametrize("n_first", [3])
def test_sse_resumes_from_last_event_id(db_url: str, tmp_path: Path, n_first: int) -> None:
    token = "acp_op_events-test-admin-token-0123456789abcdef"
    env = server_env(
        db_url,
        tmp_path,
        AGENTCTL_ADMIN_TOKEN=token,
        AGENTCTL_KEY_ENCRYPTION_KEY="events-test-key-encryption-key-0123456789abc",
        AGENTCTL_EVENTS_POLL_SECONDS="0.05",
    )
    admin = {"Authorization": f"Bearer {token}"}
    with serving(env, tmp_path / "server.log") as url:
        httpx.post(f"{url}/v1/domains", json={"name": "payments"}, headers=admin)

        def register(i: int) -> None:
            r = httpx.post(
                f"{url}/v1/agents",
                json={"name": f"bot-{i}", "domain": "payments", "owner": "o"},
                headers=admin,
            )
            assert r.status_code == 201

        first: list[dict[str, Any]] = []
        reader = threading.Thread(target=_read_sse, args=(url, admin, n_first, first))
        reader.start()
        for i in range(n_first):
            register(i)
        reader.join(timeout=20)
        assert len(first) == n_first
        # Disconnected. More happens meanwhile; the consumer resumes from its last id.
        for i in range(n_first, n_first + 4):
            register(i)
        rest: list[dict[str, Any]] = []
        resume = {**admin, "Last-Event-ID": first[-1]["cursor"]}
        deadline = time.monotonic() + 20
        _read_sse(url, resume, 4, rest)
        assert time.monotonic() < deadline
    names = [e["data"]["name"] for e in first + rest]
    assert names == [f"bot-{i}" for i in range(n_first + 4)]

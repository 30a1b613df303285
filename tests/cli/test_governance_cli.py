"""`agentctl approvals`, `budgets`, `domains suspend|resume`, `events` and `webhooks` against a
real `agentctl serve` (see conftest.py): the operator's side of issue 13, the agent's side
(decisions) over HTTP as an agent sends it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest

from tests.cli.conftest import ADMIN, response_schema
from tests.events.test_webhooks import Receiver
from tests.fixtures.factories import digest
from tests.fixtures.oauth2 import basic

REFUND = {"type": "order", "id": "o-1002", "amount": 9000, "region": "eu-west-1"}
SMALL = {"type": "order", "id": "o-1004", "amount": 40, "region": "eu-west-1"}

Decide = Callable[..., httpx.Response]


def _until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def agent(cli: Any) -> Iterator[tuple[str, Decide]]:
    """payments/refund-bot (owner team-a, autonomy 1, an active version) and a function that
    sends one decision with its token."""
    cli("domains", "create", "payments", "-o", "json").json("domains-create")
    aid = cli(
        "agents", "create", "refund-bot", "--domain", "payments", "--owner", "team-a",
        "--autonomy-level", "1", "-o", "json",
    ).json("agents-create")["id"]  # fmt: skip
    vid = cli(
        "versions", "register", aid, "--version", "1.0.0", "--model-name", "m",
        "--model-version", "1", "--artifact-digest", digest("1.0.0"), "-o", "json",
    ).json("agents-register_version")["id"]  # fmt: skip
    cli("versions", "approve", aid, vid, "-o", "json").json("agents-approve_version")
    cli("versions", "activate", aid, vid, "-o", "json").json("agents-activate_version")
    cred = cli("credentials", "create", aid, "--scope", "decisions:create", "-o", "json").json(
        "credentials-create"
    )
    with httpx.Client(base_url=cli.url, timeout=30) as c:
        token = c.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers=basic(cred["client_id"], cred["client_secret"]),
        ).json()["access_token"]

        def decide(resource: dict[str, Any], **extra: Any) -> httpx.Response:
            body = {"action": "payments.refund", "resource": resource, **extra}
            return c.post("/v1/decisions", json=body, headers={"Authorization": f"Bearer {token}"})

        yield aid, decide


def test_approvals(cli: Any, agent: tuple[str, Decide]) -> None:
    aid, decide = agent
    asked = decide(REFUND).json()
    assert asked["effect"] == "require_approval", asked
    approval_id = asked["approval_id"]

    pending = cli("approvals", "list", "--state", "pending", "--domain", "payments", "-o", "json")
    assert [a["id"] for a in pending.json("approvals-list")["data"]] == [approval_id]
    assert (
        cli("approvals", "list", "--state", "denied", "-o", "json").json("approvals-list")["data"]
        == []
    )
    table = cli("approvals", "list", "--agent-id", aid)
    assert table.code == 0, table.err
    assert approval_id in table.out
    assert "pending" in table.out
    assert "payments.refund" in table.out
    shown = cli("approvals", "get", approval_id, "-o", "json").json("approvals-get")
    assert (shown["state"], shown["resource"]["amount"]) == ("pending", 9000)
    assert "payments.refund" in cli("approvals", "get", approval_id).out

    # Separation of duties: the agent's owner, even as an approver of the domain, is refused;
    # an approver of another domain does not see it.
    with httpx.Client(base_url=cli.url, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        assert c.post("/v1/domains", json={"name": "ledger"}).is_success
        owner = c.post(
            "/v1/operators", json={"name": "team-a", "role": "approver", "domains": ["payments"]}
        ).json()["token"]
        other = c.post(
            "/v1/operators", json={"name": "bob", "role": "approver", "domains": ["ledger"]}
        ).json()["token"]
    cli("approvals", "approve", approval_id, "--token", owner).failed(4, "forbidden")
    cli("approvals", "approve", approval_id, "--token", other).failed(3, "not_found")

    approved = cli(
        "approvals", "approve", approval_id, "--comment", "refund checked", "-o", "json"
    ).json("approvals-approve")
    assert (approved["state"], approved["comment"]) == ("approved", "refund checked")
    cli("approvals", "deny", approval_id).failed(1, "invalid_state_transition")

    allowed = decide(REFUND, approval_id=approval_id).json()
    assert (allowed["effect"], allowed["reasons"]) == ("allow", ["approved"])
    assert cli("approvals", "get", approval_id, "-o", "json").json("approvals-get")["state"] == (
        "used"
    )

    second = decide({**REFUND, "id": "o-1003"}).json()["approval_id"]
    denied = cli("approvals", "deny", second, "--comment", "no", "-o", "json")
    assert denied.json("approvals-deny")["state"] == "denied"
    assert "denied" in cli("approvals", "list", "--state", "denied").out
    again = decide({**REFUND, "id": "o-1003"}, approval_id=second).json()
    assert (again["effect"], again["reasons"]) == ("deny", ["approval_denied"])

    cli("approvals", "get", "00000000-0000-0000-0000-000000000000").failed(3, "not_found")
    cli("approvals", "list", "--state", "maybe").failed(1, "validation_failed")


def test_budgets(cli: Any, agent: tuple[str, Decide]) -> None:
    aid, decide = agent
    assert cli("budgets", "get", "--agent", aid).out.strip() == f"agent {aid}: no limits"
    put = cli("budgets", "set", "--agent", aid, "--actions-per-minute", "3", "-o", "json")
    budget = put.json("budgets-put_agent")
    assert (budget["actions_per_minute"], budget["spend_per_day"]) == (3, None)
    answers = [decide(SMALL) for _ in range(5)]
    effects = [r.json()["effect"] for r in answers]
    assert "deny" in effects
    refused = answers[effects.index("deny")]
    assert refused.json()["reasons"] == ["budget_exceeded"]
    assert int(refused.headers["retry-after"]) >= 1
    use = cli("budgets", "get", "--agent", aid, "-o", "json").json("budgets-get_agent")["use"]
    assert (use["actions_per_minute"]["used"], use["actions_per_minute"]["remaining"]) == (3, 0)
    table = cli("budgets", "get", "--agent", aid)
    assert table.code == 0, table.err
    assert "actions_per_minute" in table.out
    assert "resource.amount" in table.out

    # set replaces every limit: the per-minute one is gone, a daily spend limit is set.
    domain = cli(
        "budgets", "set", "--domain", "payments", "--spend-per-day", "100000",
        "--spend-field", "resource.amount", "-o", "json",
    ).json("budgets-put_domain")  # fmt: skip
    assert (domain["scope"], domain["key"], domain["spend_per_day"]) == ("domain", "payments", 1e5)
    cleared = cli("budgets", "set", "--agent", aid, "-o", "json").json("budgets-put_agent")
    assert cleared["actions_per_minute"] is None
    assert decide(SMALL).json()["effect"] == "allow"
    shown = cli("budgets", "get", "--domain", "payments", "-o", "json").json("budgets-get_domain")
    assert shown["use"]["spend_per_day"]["used"] >= 40

    # usage and refusals, one line each
    cli("budgets", "get").failed(2, "give exactly one")
    cli("budgets", "get", "--agent", aid, "--domain", "payments").failed(2, "give exactly one")
    cli("budgets", "get", "--domain", "nowhere").failed(3, "not_found")
    bad = cli("budgets", "set", "--domain", "payments", "--spend-field", "amount")
    bad.failed(1, "validation_failed")
    assert cli("budgets", "set", "--agent", aid, "--actions-per-hour", "-1").code == 2


def test_kill_switch(cli: Any, agent: tuple[str, Decide]) -> None:
    _, decide = agent
    assert decide(SMALL).status_code == 200
    suspended = cli("domains", "suspend", "payments", "-o", "json").json("domains-suspend")
    assert suspended["suspended_at"] is not None
    _until(lambda: decide(SMALL).status_code == 401, seconds=3)
    assert "payments" in cli("domains", "list").out
    resumed = cli("domains", "resume", "payments", "-o", "json").json("domains-resume")
    assert resumed["suspended_at"] is None
    _until(lambda: decide(SMALL).status_code == 200, seconds=3)
    assert "payments" in cli("domains", "suspend", "payments").out
    cli("domains", "suspend", "nowhere").failed(3, "not_found")
    records = cli("audit", "list", "--domain", "payments", "-o", "json").json("audit-list_records")[
        "data"
    ]
    assert sum(r["kind"] == "kill_switch" for r in records) == 3


def _cloud_events(out: str) -> list[dict[str, Any]]:
    schema = response_schema("events-list")
    event_schema = {
        **schema["components"]["schemas"]["CloudEvent"],
        "components": schema["components"],
    }
    events = [json.loads(line) for line in out.splitlines()]
    validator = jsonschema_rs.validator_for(event_schema)
    assert all(validator.is_valid(e) for e in events), events
    return events


def test_events_and_webhooks(cli: Any, agent: tuple[str, Decide]) -> None:
    aid, _ = agent
    receiver = Receiver(failures=0)
    try:
        hook = cli(
            "webhooks", "create", receiver.url, "--type", "agent.suspended.v1",
            "--type", "agent.resumed.v1", "--domain", "payments", "-o", "json",
        ).json("webhooks-create")  # fmt: skip
        assert hook["secret"].startswith("whsec_")
        hooks = cli("webhooks", "list", "-o", "json").json("webhooks-list")["data"]
        assert [h["id"] for h in hooks] == [hook["id"]]
        assert "secret" not in hooks[0]
        assert receiver.url in cli("webhooks", "list").out
        got = cli("webhooks", "get", hook["id"], "-o", "json").json("webhooks-get")
        assert sorted(got["types"]) == ["agent.resumed.v1", "agent.suspended.v1"]

        cli("agents", "suspend", aid, "-o", "json").json("agents-suspend")
        cli("agents", "resume", aid, "-o", "json").json("agents-resume")

        def delivered() -> list[dict[str, Any]]:
            page = cli("webhooks", "deliveries", hook["id"], "--state", "delivered", "-o", "json")
            data: list[dict[str, Any]] = page.json("webhooks-list_deliveries")["data"]
            return data

        _until(lambda: len(delivered()) == 2)
        assert [d["event_type"] for d in delivered()] == ["agent.suspended.v1", "agent.resumed.v1"]
        assert "agent.resumed.v1" in cli("webhooks", "deliveries", hook["id"]).out
        again = cli("webhooks", "redeliver", hook["id"], delivered()[0]["id"], "-o", "json")
        assert again.json("webhooks-redeliver")["state"] == "pending"
        _until(lambda: len(receiver.accepted) == 3)

        assert cli("webhooks", "delete", hook["id"]).out.strip() == f"deleted webhook {hook['id']}"
        cli("webhooks", "get", hook["id"]).failed(3, "not_found")
        cli("webhooks", "create", "ftp://example.com/x").failed(1, "validation_failed")
    finally:
        receiver.server.shutdown()

    # events: a page by cursor, and the stream, resumed after a cursor
    page = cli("events", "list", "--domain", "payments", "--limit", "2", "-o", "json")
    first = page.json("events-list")
    assert first["has_more"] is True
    assert first["data"][0]["type"] == "agent.registered.v1"
    rest = cli("events", "list", "--after", first["next_after"], "-o", "json").json("events-list")
    everything = first["data"] + rest["data"]
    types = [e["type"] for e in everything]
    assert types.count("agent.suspended.v1") == types.count("agent.resumed.v1") == 1
    table = cli("events", "list", "--type", "agent.suspended.v1")
    assert table.code == 0, table.err
    assert "agent.suspended.v1" in table.out
    assert "agent.resumed.v1" not in table.out

    tailed = cli("events", "tail", "--domain", "payments", "--count", "3", "-o", "json")
    assert tailed.code == 0, tailed.err
    head = _cloud_events(tailed.out)
    assert [e["id"] for e in head] == [e["id"] for e in everything[:3]]
    resumed = cli(
        "events", "tail", "--domain", "payments", "--after", head[-1]["cursor"],
        "--count", "2", "-o", "json",
    )  # fmt: skip
    assert [e["id"] for e in _cloud_events(resumed.out)] == [e["id"] for e in everything[3:5]]
    only = cli(
        "events", "tail", "--type", "agent.resumed.v1", "--domain", "payments", "--count", "1"
    )
    assert only.code == 0, only.err
    assert "agent.resumed.v1" in only.out
    assert aid in only.out

    # A follower already waiting gets the next event as it happens.
    def later() -> None:
        time.sleep(0.5)
        with httpx.Client(base_url=cli.url, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
            assert c.post(f"/v1/agents/{aid}/suspend").is_success

    changer = threading.Thread(target=later)
    changer.start()
    waited = cli(
        "events", "tail", "--after", everything[-1]["cursor"], "--count", "1", "-o", "json"
    )
    changer.join()
    assert [e["type"] for e in _cloud_events(waited.out)] == ["agent.suspended.v1"]
    cli("events", "list", "--type", "no.such.v1").failed(1, "validation_failed")
    cli("events", "tail", "--type", "no.such.v1").failed(1, "validation_failed")

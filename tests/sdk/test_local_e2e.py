"""Local mode end to end against a real ``agentctl serve`` (SQLite and PostgreSQL): the bundle
the centre serves and signs, enforcement points registered over its API, decision logs back.

- parity: 500 generated requests decided by the SDK's local mode and by ``POST /v1/decisions``
  give the same decisions (agents of two domains, each at its own domain's point, and a
  suspended agent, which the centre refuses and the edge denies ``agent_not_active``);
- propagation: suspending an agent denies its next local decision within the poll interval;
- a token of domain A at domain B's point is denied; a point cannot read another domain's
  bundle (404);
- offline: with the server stopped the SDK keeps deciding until ``max_staleness``, then denies
  ``policy_stale``; when the server returns, every decision logged meanwhile is on record
  exactly once with its audit record, and the audit log verifies.
"""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from agent_sdk import AuthenticationError, Client, LocalOptions, VerificationKey
from tests.conftest import PG_URL, _pg_admin, _pg_drop
from tests.fixtures.servers import free_port, serving
from tests.sdk.conftest import Server, make_server_env
from tests.sdk.localmode import needs_opa

pytestmark = needs_opa

SMALL = {"type": "order", "id": "o-1001", "amount": 40, "region": "eu-west-1"}
# Every agent of the payments domain is granted invoice reads (policies/data.json).
READ = {"type": "invoice", "id": "inv-1", "region": "eu-west-1"}
INVOICE_READ = "payments.invoice.read"


@dataclass
class Registered:
    name: str
    agent_id: str
    domain: str
    client_id: str
    client_secret: str


@dataclass
class Point:
    name: str
    domain: str
    client_id: str
    client_secret: str


def _admin(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=server.admin, timeout=60)


def register(server: Server, domain: str, name: str, level: int) -> Registered:
    """An agent with an active version and a new credential (an agent of that name in that
    domain is reused: the shipped policy grants some actions by name)."""
    with _admin(server) as c:
        r = c.post("/v1/domains", json={"name": domain})
        assert r.status_code in (201, 409), r.text
        r = c.post(
            "/v1/agents",
            json={
                "name": name,
                "domain": domain,
                "owner": "o@example.com",
                "autonomy_level": level,
            },
        )
        if r.status_code == 409:  # the policy grants by name: reuse the one of that name
            listed = c.get("/v1/agents", params={"domain": domain, "limit": 200}).json()["data"]
            agent_id = next(a["id"] for a in listed if a["name"] == name)
            r = c.post(
                f"/v1/agents/{agent_id}/credentials",
                json={"scopes": ["decisions:create", "audit:write"]},
            )
            assert r.status_code == 201, r.text
            cred = r.json()
            return Registered(name, agent_id, domain, cred["client_id"], cred["client_secret"])
        assert r.status_code == 201, r.text
        agent_id = r.json()["id"]
        r = c.post(
            f"/v1/agents/{agent_id}/versions",
            json={
                "version": "1.0.0",
                "model_name": "m",
                "model_version": "1",
                "artifact_digest": "sha256:" + "ab" * 32,
            },
        )
        assert r.status_code == 201, r.text
        for step in ("approve", "activate"):
            assert c.post(f"/v1/agents/{agent_id}/versions/{r.json()['id']}/{step}").is_success
        r = c.post(
            f"/v1/agents/{agent_id}/credentials",
            json={"scopes": ["decisions:create", "audit:write"]},
        )
        assert r.status_code == 201, r.text
        cred = r.json()
    return Registered(name, agent_id, domain, cred["client_id"], cred["client_secret"])


def point(server: Server, domain: str) -> Point:
    with _admin(server) as c:
        r = c.post("/v1/domains", json={"name": domain})
        assert r.status_code in (201, 409), r.text
        name = f"sdk-{uuid.uuid4().hex[:10]}"
        r = c.post(f"/v1/domains/{domain}/enforcement-points", json={"name": name, "kind": "sdk"})
        assert r.status_code == 201, r.text
        cred = r.json()["credential"]
    return Point(name, domain, cred["client_id"], cred["client_secret"])


def bundle_keys(url: str) -> list[VerificationKey]:
    keys = httpx.get(f"{url}/v1/federation/keys", timeout=30).json()
    return [VerificationKey(kid, pem, keys["algorithm"]) for kid, pem in keys["pem"].items()]


def local(url: str, agent: Registered, at: Point, tmp: Path, **extra: Any) -> Client:
    settings: dict[str, Any] = {
        "domain": at.domain,
        "client_id": at.client_id,
        "client_secret": at.client_secret,
        "bundle_keys": extra.pop("bundle_keys", None) or bundle_keys(url),
        "cache_dir": tmp / f"cache-{agent.client_id}-{at.client_id}",
        "poll_interval": 0.5,
        "long_poll": 10,
        "status_interval": 1,
    }
    settings.update(extra)
    return Client(
        url,
        agent.client_id,
        agent.client_secret,
        outbox_path=tmp / f"audit-{agent.client_id}.sqlite3",
        timeout=60,
        mode="local",
        local=LocalOptions(**settings),
    )


def remote(url: str, agent: Registered, tmp: Path) -> Client:
    return Client(
        url,
        agent.client_id,
        agent.client_secret,
        outbox_path=tmp / f"remote-{agent.client_id}.sqlite3",
        timeout=60,
    )


def suspend(server: Server, agent: Registered) -> None:
    with _admin(server) as c:
        assert c.post(f"/v1/agents/{agent.agent_id}/suspend").status_code == 200


# --- parity --------------------------------------------------------------------------------------

ACTIONS = [
    "payments.refund",
    "payments.refund.read",
    "payments.payout",
    "payments.invoice.read",
    "payments.invoice.void",
    "ledger.entry.read",
    "claims.claim.read",
    "claims.claim.close",
    "support.ticket.delete",
    "crm.customer.read",
    "payments.unknown",
    "payments.*",
]
TYPES = ["order", "payment", "invoice", "claim", "customer", "kb_article", "spaceship"]
REGIONS = ["eu-west-1", "eu-central-1", "us-east-1", "ap-south-1", None]
AMOUNTS: list[Any] = [0, 40, 99.5, 100, 101, 4999, 5001, 9000, -1, "40", None, 1e9, 100.0]


PLAUSIBLE = {  # what each agent is granted, on resources where it may act
    "refund-bot": ("payments.refund", "order"),
    "payout-bot": ("payments.payout", "payout"),
    "claims-triage": ("claims.claim.close", "claim"),
}


def generated(rng: random.Random, name: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A request: often one the agent may make (so allow and require_approval occur), else
    anything (undeclared actions, wrong regions, odd amounts and classifications)."""
    if rng.random() < 0.6:
        action, kind = PLAUSIBLE.get(name, ("payments.invoice.read", "invoice"))
        resource: dict[str, Any] = {"type": kind, "id": rng.choice(["o-1", "c-3", "vip-7"])}
        region = rng.choice(["eu-west-1", "eu-central-1", "eu-central-1", "us-east-1"])
    else:
        action = rng.choice(ACTIONS)
        resource = {"type": rng.choice(TYPES), "id": rng.choice(["o-1", "vip-7", "c-3", "inv-9"])}
        region = rng.choice(REGIONS)
    if region is not None:
        resource["region"] = region
    amount = rng.choice(AMOUNTS)
    if amount is not None:
        resource["amount"] = amount
    if rng.random() < 0.2:
        resource["classification"] = rng.choice(["public", "restricted", "secret"])
    if rng.random() < 0.1:
        resource["card_number"] = "4111111111111111"
    context: dict[str, Any] = {}
    if rng.random() < 0.3:
        context["risk"] = rng.choice(["low", "medium", "high", "critical", "none"])
    return action, resource, context


def _answer(decision: Any) -> tuple[str, bool, list[str], list[dict[str, Any]]]:
    return (decision.effect, decision.allow, decision.reasons, decision.obligations)


def test_local_mode_decides_as_the_centre_on_500_generated_requests(
    server: Server, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:6]
    agents = [
        register(server, "payments", "refund-bot", 1),
        register(server, "payments", "payout-bot", 2),
        register(server, "payments", f"observer-{run}", 0),
        register(server, "claims", "claims-triage", 3),
        register(server, "claims", f"adjuster-{run}", 1),
    ]
    suspended = register(server, "payments", f"suspended-{run}", 2)
    points = {d: point(server, d) for d in ("payments", "claims")}
    locals_ = {a.client_id: local(server.url, a, points[a.domain], tmp_path) for a in agents}
    remotes = {a.client_id: remote(server.url, a, tmp_path) for a in agents}
    edge_suspended = local(server.url, suspended, points["payments"], tmp_path)
    try:
        assert edge_suspended.decide(INVOICE_READ, READ).allow  # holds a token now
        suspend(server, suspended)
        assert _eventually(lambda: not edge_suspended.decide(INVOICE_READ, READ).allow)
        rng = random.Random(20261129)
        differences = []
        compared = refused = timeouts = 0
        seen: set[str] = set()
        for i in range(500):
            agent = agents[i % len(agents)]
            action, resource, context = generated(rng, agent.name)
            if i % 10 == 9:  # the suspended agent: the centre refuses it, the edge denies it
                edge = edge_suspended.decide(action, resource, context)
                assert edge.effect == "deny"
                assert "agent_not_active" in edge.reasons
                with pytest.raises(AuthenticationError):
                    remote(server.url, suspended, tmp_path).decide(action, resource, context)
                refused += 1
                continue
            centre = remotes[agent.client_id].decide(action, resource, context)
            edge = locals_[agent.client_id].decide(action, resource, context)
            for _ in range(3):
                # An evaluation past its 1 s deadline on a loaded CI machine says nothing of
                # the policy: ask again. Any other engine failure is a difference.
                if edge.reasons != ["engine_timeout"]:
                    break
                timeouts += 1
                edge = locals_[agent.client_id].decide(action, resource, context)
            compared += 1
            seen.add(edge.effect)
            if _answer(centre) != _answer(edge):
                differences.append((agent.domain, action, resource, context, centre, edge))
        print(
            f"parity: {compared} compared, {refused} suspended, {timeouts} timeouts asked again, "
            f"{len(differences)} differences"
        )
        assert differences == []
        assert "allow" in seen  # the corpus is not all denies
        assert "require_approval" in seen
        # The points report what they run: the centre lists the current revision, no error.
        with _admin(server) as c:
            for at in points.values():
                shown = c.get(f"/v1/domains/{at.domain}/enforcement-points/{at.name}").json()
                assert shown["kind"] == "sdk"
                assert shown["bundle_revision"] == shown["current_revision"], shown
                assert shown["last_error"] is None, shown
                assert shown["last_contact_at"] is not None
    finally:
        for client in [*locals_.values(), *remotes.values(), edge_suspended]:
            client.close(timeout=30)


def _eventually(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# --- propagation, domains ------------------------------------------------------------------------


def test_suspending_an_agent_denies_at_the_sdk_within_its_poll_interval(
    server: Server, tmp_path: Path
) -> None:
    agent = register(server, "payments", f"suspendee-{uuid.uuid4().hex[:6]}", 1)
    at = point(server, "payments")
    with local(server.url, agent, at, tmp_path, long_poll=0, poll_interval=2) as client:
        assert client.decide(INVOICE_READ, READ).allow
        suspend(server, agent)
        started = time.monotonic()
        assert _eventually(lambda: not client.decide(INVOICE_READ, READ).allow)
        took = time.monotonic() - started
        print(f"suspension denied at the SDK after {took:.2f} s (poll interval 2 s, no long poll)")
        assert client.decide(INVOICE_READ, READ).reasons == ["agent_not_active"]
        assert took < 2 + 3  # one poll interval, and a loaded machine's margin
    with local(server.url, agent, at, tmp_path / "lp", long_poll=20, poll_interval=30) as client:
        with _admin(server) as c:
            assert c.post(f"/v1/agents/{agent.agent_id}/resume").status_code == 200
        started = time.monotonic()
        # A resumed agent needs a fresh token (the old one was refused): the client gets one.
        assert _eventually(lambda: client.decide(INVOICE_READ, READ).allow)
        print(f"resume allowed at the SDK after {time.monotonic() - started:.2f} s (long poll)")


class _SlowActivation(logging.Handler):
    """Holds the bundle thread for a second right after it logs an activation: the window in
    which a decision waiting for the first bundle used to see the policy but no pull time."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("bundle revision"):
            time.sleep(1.0)


def test_the_first_decision_on_the_first_bundle_is_never_stale(
    server: Server, tmp_path: Path
) -> None:
    agent = register(server, "payments", f"first-{uuid.uuid4().hex[:6]}", 1)
    at = point(server, "payments")
    sdk_log = logging.getLogger("agent_sdk")
    handler, level = _SlowActivation(), sdk_log.level
    sdk_log.addHandler(handler)
    sdk_log.setLevel(logging.INFO)
    try:
        with local(server.url, agent, at, tmp_path) as client:
            decision = client.decide(INVOICE_READ, READ)  # waits for the first bundle
            assert (decision.effect, decision.reasons) == ("allow", []), decision
    finally:
        sdk_log.removeHandler(handler)
        sdk_log.setLevel(level)


def test_a_token_of_domain_a_at_domain_b_is_denied_and_bundles_stay_in_their_domain(
    server: Server, tmp_path: Path
) -> None:
    agent = register(server, "payments", f"wanderer-{uuid.uuid4().hex[:6]}", 3)
    claims_point = point(server, "claims")
    with local(server.url, agent, claims_point, tmp_path) as client:
        decision = client.decide("claims.claim.read", {"type": "claim", "id": "c-1"})
        assert decision.effect == "deny"
        assert "agent_missing" in decision.reasons
        assert client.flush(30)
    # The centre does not attribute that log to anyone: it is rejected, not recorded.
    assert _decisions(server, agent.agent_id) == []
    token = httpx.post(
        f"{server.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(claims_point.client_id, claims_point.client_secret),
        timeout=30,
    ).json()["access_token"]
    for domain, status in (("payments", 404), ("claims", 200)):
        r = httpx.get(
            f"{server.url}/v1/bundles/{domain}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert r.status_code == status


def _decisions(server: Server, agent_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"agent_id": agent_id, "limit": 100}
    with _admin(server) as c:
        while True:
            page = c.get("/v1/decisions", params=params).json()
            out.extend(page["data"])
            if not page["has_more"]:
                return out
            params["after"] = page["next_after"]


# --- offline -------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def own_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dict[str, str], int, Path]]:
    """A database and server of this test's own: it is stopped and started again, and no other
    server may share its database (the audit log's sequencer and verification are per server
    key)."""
    if request.param == "sqlite":
        path = tmp_path / "own.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield (
            make_server_env(f"sqlite+aiosqlite:///{path}", tmp_path / "own"),
            free_port(),
            (tmp_path / "own"),
        )
        return
    assert PG_URL is not None
    template = request.getfixturevalue("pg_template")
    name = f"acp_sdk_{uuid.uuid4().hex[:16]}"
    asyncio.run(_pg_admin(f"CREATE DATABASE {name} TEMPLATE {template}"))
    try:
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        yield make_server_env(url, tmp_path / "own"), free_port(), tmp_path / "own"
    finally:
        asyncio.run(_pg_drop(name))


def test_offline_the_sdk_decides_until_max_staleness_then_every_log_arrives_once(
    own_server: tuple[dict[str, str], int, Path], tmp_path: Path
) -> None:
    env, port, data_dir = own_server
    data_dir.mkdir(parents=True, exist_ok=True)
    with serving(env, data_dir / "first.log", port=port) as url:
        srv = Server(url, env["AGENTCTL_DATABASE_URL"], env, data_dir / "first.log", port)
        agent = register(srv, "payments", f"offline-{uuid.uuid4().hex[:6]}", 1)
        restarted = register(srv, "payments", f"restarted-{uuid.uuid4().hex[:6]}", 1)
        at = point(srv, "payments")
        keys = bundle_keys(url)
        client = local(url, agent, at, tmp_path, max_staleness_seconds=4, poll_interval=0.2)
        online = [client.decide(INVOICE_READ, READ).decision_id for _ in range(3)]
        assert client.flush(30)
        # Another agent's process, which stops with the centre and starts again without it.
        before = local(url, restarted, at, tmp_path, bundle_keys=keys, max_staleness_seconds=30)
        online.append(before.decide(INVOICE_READ, READ).decision_id)
        assert before.flush(30)
        before.close(timeout=0)
        cache = tmp_path / f"cache-{restarted.client_id}-{at.client_id}"
        kept = cache / f"agent-token-{restarted.client_id}.json"
        assert kept.stat().st_mode & 0o777 == 0o600
        assert restarted.client_secret not in kept.read_text()
        # The SDK's last contact is no earlier than a poll interval before the server begins
        # to stop; the bound runs from there (a loaded machine takes seconds to stop it).
        stopped = time.monotonic() - 0.2
    # Started while the centre is out of reach: its bundle and its token come from the cache
    # directory, and it decides at once (before: deny agent_missing, each decision waiting for
    # a token request to fail).
    after = local(url, restarted, at, tmp_path, bundle_keys=keys, max_staleness_seconds=30)
    try:
        asked = time.monotonic()
        decided = after.decide(INVOICE_READ, READ)
        assert (decided.effect, decided.engine) == ("allow", "sdk"), decided.reasons
        assert time.monotonic() - asked < 2
        # The centre is stopped: the SDK keeps deciding on its last bundle, then fails closed.
        offline = []
        while True:
            decision = client.decide(INVOICE_READ, READ)
            offline.append(decision.decision_id)
            if not decision.allow:
                break
            time.sleep(0.1)
        lasted = time.monotonic() - stopped
        print(f"offline: {len(offline) - 1} decisions allowed for {lasted:.2f} s, then denied")
        assert decision.reasons == ["policy_stale"]
        assert 3 <= lasted < 10
        assert client.pending_decision_logs() >= len(offline)
        with serving(env, data_dir / "second.log", port=port):
            assert client.flush(60)
            assert after.flush(60)
            assert _eventually(lambda: client.decide(INVOICE_READ, READ).allow)
            assert client.flush(60)
            recorded = _decisions(srv, agent.agent_id)
            ids = [d["id"] for d in recorded]
            assert len(ids) == len(set(ids))  # exactly once
            ids += [d["id"] for d in _decisions(srv, restarted.agent_id)]
            expected = {str(i) for i in [*online, *offline, decided.decision_id]}
            assert expected <= set(ids)
            with _admin(srv) as c:
                for decision_id in sorted(expected):
                    page = c.get("/v1/audit/records", params={"decision_id": decision_id})
                    assert len(page.json()["data"]) == 1, decision_id
                # The sequencer appends committed records to the log shortly after.
                verdicts: list[dict[str, Any]] = []
                _eventually(
                    lambda: verdicts.append(c.get("/v1/audit/verify").json()) or verdicts[-1]["ok"]
                )
            assert verdicts[-1]["ok"], verdicts[-1]
    finally:
        after.close(timeout=0)
        client.close(timeout=0)

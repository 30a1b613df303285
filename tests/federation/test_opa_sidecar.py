"""A stock OPA sidecar (the pinned binary) against a real control plane, configured as
``agentctl enforcement-points config`` prints: token from /oauth/token, the signed bundle,
decisions equal to the centre's, propagation of a suspension, decision logs back exactly once.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.federation.harness import (
    Opa,
    Plane,
    opa_config,
    propagation_timeline,
    start_opa,
    start_plane,
)

pytestmark = pytest.mark.opa

ACTIONS = [
    "payments.refund",
    "payments.refund.read",
    "payments.payout",
    "payments.invoice.read",
    "payments.invoice.void",
    "ledger.entry.read",
    "claims.claim.read",
    "support.ticket.read",
    "crm.customer.read",
    "payments.*",
    "unknown.action",
]
TYPES = ["order", "payment", "invoice", "customer", "ledger_entry", "thing"]
AMOUNTS: list[Any] = [None, 0, 10, 99.99, 100, 100.5, 1000, 5000, 10000, 10001, -5, "12"]
REGIONS = [None, "eu-west-1", "eu-central-1", "us-east-1", "ap-south-1"]
CLASSES = [None, "public", "internal", "confidential", "restricted", "bogus"]
RISKS = [None, "low", "medium", "high", "critical", "bogus"]


@dataclass
class Federation:
    plane: Plane
    opa: Opa
    agents: dict[str, dict[str, Any]]
    workdir: Path
    db_url: str
    config: Path


@pytest.fixture
def federation(db_url: str, tmp_path: Path) -> Iterator[Federation]:
    with start_plane(db_url, tmp_path) as plane:
        plane.domain("payments")
        plane.domain("claims")
        agents = {
            "refund-bot": plane.agent("payments", "refund-bot", autonomy_level=3),
            "payout-bot": plane.agent("payments", "payout-bot", autonomy_level=1),
            "ledger-bot": plane.agent("payments", "ledger-bot", autonomy_level=0),
            "old-bot": plane.agent("payments", "old-bot", autonomy_level=2),
            "claims-triage": plane.agent("claims", "claims-triage", autonomy_level=3),
        }
        # Suspended after its token was issued: the token stays valid until it expires.
        r = plane.post(f"/v1/agents/{agents['old-bot']['id']}/suspend")
        assert r.status_code == 200, r.text
        point = plane.point("payments", "payments-opa")
        config = opa_config(
            plane, "payments", "payments-opa", point["credential"]["client_secret"], tmp_path
        )
        with start_opa(config, tmp_path) as opa:
            yield Federation(plane, opa, agents, tmp_path, db_url, config)


def _request(rng: random.Random) -> dict[str, Any]:
    resource: dict[str, Any] = {"type": rng.choice(TYPES), "id": rng.choice(["o-1", "pay-9"])}
    for key, values in (("amount", AMOUNTS), ("region", REGIONS), ("classification", CLASSES)):
        value = rng.choice(values)
        if value is not None:
            resource[key] = value
    risk = rng.choice(RISKS)
    return {
        "action": rng.choice(ACTIONS),
        "resource": resource,
        "context": {"risk": risk} if risk else {},
    }


def test_opa_decides_like_the_centre(federation: Federation) -> None:
    """500 seeded inputs over agents of every autonomy level, a suspended agent and an agent of
    another domain; a forged input.agent / input.vouched rides along and must change nothing."""
    rng = random.Random(20261129)
    forged = {
        "id": federation.agents["refund-bot"]["id"],
        "name": "refund-bot",
        "domain": "payments",
        "status": "active",
        "autonomy_level": 3,
        "labels": {},
        "version": {"id": "v", "version": "1.0.0", "state": "active"},
    }
    differences, kinds = [], {"compared": 0, "suspended": 0, "foreign": 0}
    with httpx.Client(verify=federation.plane.tls, timeout=30) as centre:
        for _ in range(500):
            name = rng.choice(list(federation.agents))
            agent = federation.agents[name]
            body = _request(rng)
            edge = federation.opa.decide(
                {
                    **body,
                    "token": agent["token"],
                    "agent": forged,
                    "vouched": {"time": "2024-05-06T10:00:00Z"},
                }
            )["result"]
            if name == "claims-triage":
                kinds["foreign"] += 1
                if edge["effect"] != "deny" or "agent_missing" not in edge["reasons"]:
                    differences.append((name, body, edge, "a foreign agent must be denied"))
                continue
            r = centre.post(
                federation.plane.url + "/v1/decisions",
                json=body,
                headers={"Authorization": f"Bearer {agent['token']}"},
            )
            if name == "old-bot":
                kinds["suspended"] += 1
                assert r.status_code == 401, r.text
                if edge["effect"] != "deny" or "agent_not_active" not in edge["reasons"]:
                    differences.append((name, body, edge, "suspended: centre refuses"))
                continue
            assert r.status_code == 200, r.text
            kinds["compared"] += 1
            want = {k: r.json()[k] for k in ("effect", "allow", "reasons", "obligations")}
            if want != edge:
                differences.append((name, body, edge, want))
    print(f"\nOPA vs POST /v1/decisions: {kinds}, differences: {len(differences)}")
    assert differences == []
    assert min(kinds.values()) > 30


def test_a_suspension_reaches_the_sidecar_within_two_seconds(federation: Federation) -> None:
    agent = federation.agents["refund-bot"]
    body = {
        "token": agent["token"],
        "action": "payments.refund",
        "resource": {"type": "order", "id": "o-1", "amount": 50, "region": "eu-west-1"},
    }
    assert federation.opa.decide(body)["result"]["effect"] == "allow"
    time.sleep(1.5)  # OPA is now in a long poll on the current revision
    wall = datetime.now(UTC)
    r = federation.plane.post(f"/v1/agents/{agent['id']}/suspend")
    assert r.status_code == 200, r.text
    suspended_at = time.monotonic()
    while federation.opa.decide(body)["result"]["effect"] == "allow":
        assert time.monotonic() - suspended_at < 10, "the suspension never reached OPA"
        time.sleep(0.02)
    elapsed = time.monotonic() - suspended_at
    print(f"\nsuspension -> deny at the OPA sidecar: {elapsed * 1000:.0f} ms")
    assert elapsed < 2.0, propagation_timeline(federation.plane, federation.opa, wall)
    decision = federation.opa.decide(body)["result"]
    assert "agent_not_active" in decision["reasons"]


def _wait_for_effect(opa: Opa, body: dict[str, Any], effect: str, since: float) -> float:
    """Seconds from ``since`` until OPA answers ``effect`` for ``body`` (at most 10)."""
    while opa.decide(body)["result"]["effect"] != effect:
        assert time.monotonic() - since < 10, f"OPA never answered {effect}"
        time.sleep(0.02)
    return time.monotonic() - since


def test_a_revoked_token_and_credential_reach_the_sidecar_within_two_seconds(
    federation: Federation,
) -> None:
    """RFC 7009 at the edge: OPA verifies tokens offline, so a revoked token (or every token of
    a revoked credential) is refused by the bundle's next revision, not at its expiry."""
    plane, opa = federation.plane, federation.opa
    agent = plane.agent("payments", "revoke-bot", autonomy_level=3)
    r = plane.post(f"/v1/agents/{agent['id']}/credentials", json={"scopes": ["decisions:create"]})
    assert r.status_code == 201, r.text
    cred = r.json()
    auth = (cred["client_id"], cred["client_secret"])
    tokens = [plane.token(*auth), plane.token(*auth)]
    invoice = {"type": "invoice", "id": "inv-1", "region": "eu-west-1"}
    read = {"action": "payments.invoice.read", "resource": invoice}
    bodies = [{**read, "token": token} for token in tokens]
    for body in bodies:  # the new agent reaches OPA with a new bundle revision
        _wait_for_effect(opa, body, "allow", time.monotonic())
    time.sleep(1.5)  # OPA is now in a long poll on the current revision

    wall = datetime.now(UTC)
    r = httpx.post(
        plane.url + "/oauth/revoke", data={"token": tokens[0]}, auth=auth, verify=plane.tls
    )
    assert r.status_code == 200, r.text
    elapsed = _wait_for_effect(opa, bodies[0], "deny", time.monotonic())
    print(f"\ntoken revoked -> deny at the OPA sidecar: {elapsed * 1000:.0f} ms")
    assert elapsed < 2.0, propagation_timeline(plane, opa, wall)
    assert "agent_missing" in opa.decide(bodies[0])["result"]["reasons"]
    assert opa.decide(bodies[1])["result"]["effect"] == "allow"  # only that token

    time.sleep(1.5)
    wall = datetime.now(UTC)
    r = plane.post(f"/v1/agents/{agent['id']}/credentials/{cred['client_id']}/revoke")
    assert r.status_code == 200, r.text
    elapsed = _wait_for_effect(opa, bodies[1], "deny", time.monotonic())
    print(f"credential revoked -> deny at the OPA sidecar: {elapsed * 1000:.0f} ms")
    assert elapsed < 2.0, propagation_timeline(plane, opa, wall)


def test_decision_logs_arrive_exactly_once_across_an_outage(federation: Federation) -> None:
    plane, opa = federation.plane, federation.opa
    agent = federation.agents["refund-bot"]
    body = {
        "token": agent["token"],
        "action": "payments.refund",
        "resource": {"type": "order", "id": "o-1", "amount": 50, "region": "eu-west-1"},
    }
    ids = [opa.decide(body)["decision_id"] for _ in range(10)]
    # A large context (here 96 KiB of base64, 72 KiB gzip-compressed): OPA's default upload
    # limit (32 KiB a compressed chunk) would drop its log; the printed configuration keeps it.
    large = {**body, "context": {"note": base64.b64encode(random.randbytes(72 * 1024)).decode()}}
    ids.append(opa.decide(large)["decision_id"])
    port = int(plane.url.rsplit(":", 1)[1])
    assert plane.process is not None
    plane.process.terminate()
    plane.process.wait(timeout=60)  # after OPA's long poll in flight has ended
    # The centre is down: OPA decides on its bundle and keeps the logs it cannot upload.
    offline = [opa.decide(body) for _ in range(10)]
    assert all(d["result"]["effect"] == "allow" for d in offline)
    ids += [d["decision_id"] for d in offline]
    time.sleep(2)
    with start_plane(federation.db_url, federation.workdir, port=port) as again:
        deadline = time.monotonic() + 90
        seen: list[str] = []
        while time.monotonic() < deadline:
            seen = _edge_decision_ids(again)
            if set(ids) <= set(seen):
                break
            time.sleep(0.5)
        assert set(ids) <= set(seen), f"{len(set(ids) - set(seen))} decision logs missing"
        time.sleep(3)  # any resend would show now
        seen = _edge_decision_ids(again)
        assert sorted(i for i in seen if i in set(ids)) == sorted(ids)
        assert len(seen) == len(set(seen))
        for decision_id in ids:
            r = again.get(f"/v1/audit/records/{decision_id}")
            assert r.status_code == 200, r.text
            assert r.json()["record"]["source"]["name"] == "payments-opa"
        deadline = time.monotonic() + 30
        while True:
            verify = again.get("/v1/audit/verify")
            assert verify.status_code == 200, verify.text
            if verify.json().get("ok") or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert verify.json().get("ok"), verify.text


def _edge_decision_ids(plane: Plane) -> list[str]:
    out: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if after:
            params["after"] = after
        page = plane.get("/v1/decisions", params=params).json()
        out += [d["id"] for d in page["data"] if d["engine"] == "opa"]
        if not page["has_more"]:
            return out
        after = page["next_after"]


def test_a_sidecar_cut_off_from_the_centre_stops_deciding_after_the_bound(
    db_url: str, tmp_path: Path
) -> None:
    """A stock OPA cannot tell when it last pulled: each bundle carries fresh_until (the end of
    its refresh period plus the domain's max staleness), renewed every period while the point
    can pull. Cut off, OPA denies policy_stale at most max staleness plus one period after its
    last pull, and not before max staleness (here 6 s, periods of 2 s: a loaded machine can
    take a few seconds to build, send and activate a renewed bundle)."""
    settings = {
        "AGENTCTL_FEDERATION_MAX_STALENESS_SECONDS": "6",
        "AGENTCTL_FEDERATION_REFRESH_SECONDS": "2",
    }
    with start_plane(db_url, tmp_path, **settings) as plane:
        plane.domain("payments")
        agent = plane.agent("payments", "refund-bot", autonomy_level=3)
        point = plane.point("payments", "payments-opa")
        config = opa_config(
            plane, "payments", "payments-opa", point["credential"]["client_secret"], tmp_path
        )
        body = {
            "token": agent["token"],
            "action": "payments.refund",
            "resource": {"type": "order", "id": "o-1", "amount": 50, "region": "eu-west-1"},
        }
        with start_opa(config, tmp_path) as opa:
            # Connected for longer than the bound: renewed bundles keep it deciding.
            first = opa.revision()
            connected, wall = time.monotonic(), datetime.now(UTC)
            while time.monotonic() - connected < 9:
                decision = opa.decide(body)["result"]
                assert decision["effect"] == "allow", (
                    f"{decision}\n{propagation_timeline(plane, opa, wall)}"
                )
                time.sleep(0.25)
            assert opa.revision() != first  # renewed, with nothing else changed
            assert plane.process is not None
            plane.process.terminate()
            plane.process.wait(timeout=60)
            cut = time.monotonic()  # the last pull was at most a moment before this
            while (decision := opa.decide(body)["result"])["effect"] == "allow":
                assert time.monotonic() - cut < 6 + 2 + 3, "OPA kept deciding past the bound"
                time.sleep(0.1)
            elapsed = time.monotonic() - cut
            print(f"\ncut off -> policy_stale at the OPA sidecar after {elapsed:.1f} s")
            assert decision["reasons"] == ["agent_missing", "policy_stale"], decision
            assert elapsed > 4.5  # not before max staleness (less the pull's own moment)

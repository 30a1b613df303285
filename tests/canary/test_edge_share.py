"""A 10% canary at the edge (both databases): a stock OPA sidecar and the SDK's local mode,
both fed the domain's one signed bundle, answer every agent with the revision the control plane
assigns it; after a rollback (and after a promotion) the next bundle holds one revision and the
next edge decision uses it; the decisions the edge logs back record the revision that answered
and why (``served_by``).

The two revisions are told apart by their answer to an invoice read every payments agent is
granted: the shipped (active) revision allows it, the canary denies everything
(``maintenance``). The SDK side runs local mode's own verification and decision core
(``verify_bundle``, ``LocalPolicy``) over the bundle a point pulls, for every agent, and a full
local-mode ``Client`` for one agent on each side.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_sdk import Client, LocalOptions, VerificationKey
from agent_sdk._bundle import verify_bundle
from agent_sdk._local import LocalPolicy
from control_plane.federation import routing
from control_plane.policy.canary import on_canary
from tests.canary.helpers import BUNDLE, deny_all
from tests.federation.harness import Plane, opa_config, start_opa, start_plane

pytestmark = pytest.mark.opa

READ = {"type": "invoice", "id": "inv-1", "region": "eu-west-1"}
INVOICE_READ = "payments.invoice.read"
MAINTENANCE = ["maintenance"]


def _eventually(check: Callable[[], bool], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return check()


class Point:
    """An SDK enforcement point's credentials, pulling the domain bundle as local mode does."""

    def __init__(self, plane: Plane, domain: str) -> None:
        self.plane = plane
        self.domain = domain
        created = plane.point(domain, "payments-sdk", kind="sdk")
        self.client_id = created["credential"]["client_id"]
        self.client_secret = created["credential"]["client_secret"]
        keys = plane.get("/v1/federation/keys").json()
        self.keys = {
            kid: VerificationKey(kid, pem, keys["algorithm"]) for kid, pem in keys["pem"].items()
        }

    def pull(self) -> tuple[str, LocalPolicy]:
        """(the bundle revision, local mode's decision core over the verified bundle)."""
        token = self.plane.token(self.client_id, self.client_secret)
        r = self.plane.get(
            f"/v1/bundles/{self.domain}", headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 200, r.text
        bundle = verify_bundle(r.content, self.keys)
        return bundle.revision, LocalPolicy(bundle)


def _agents(plane: Plane) -> list[dict[str, Any]]:
    """At least 30 agents of payments, with some on each side of a 10% canary."""
    agents: list[dict[str, Any]] = []
    while len(agents) < 200:
        agents.append(plane.agent("payments", f"edge-bot-{len(agents)}"))
        on = sum(on_canary("default", a["id"], "payments", 1000, ()) for a in agents)
        if len(agents) >= 30 and 2 <= on <= len(agents) - 2:
            return agents
    raise AssertionError("200 agents without two on each side of a 10% canary")


def _canary_at_centre(plane: Plane, agents: list[dict[str, Any]], canary: int) -> set[str]:
    """The agents the control plane serves the canary, from its own answers."""
    on = set()
    for agent in agents:
        r = plane.decide(agent["token"], {"action": INVOICE_READ, "resource": READ})
        assert r.status_code == 200, r.text
        answer = r.json()
        if answer["served_by"] == "canary":
            assert (answer["revision"], answer["reasons"]) == (canary, MAINTENANCE)
            on.add(agent["id"])
        else:
            assert (answer["revision"], answer["served_by"], answer["effect"]) == (
                1,
                "active",
                "allow",
            )
    return on


def _local(
    plane: Plane, point: Point, agent: dict[str, Any], workdir: Path, stack: ExitStack
) -> Client:
    """A local-mode client of ``agent``, closed (then its HTTP client) when ``stack`` ends. The
    SDK leaves a caller's ``http_client`` open; left open, its idle TLS connection holds the
    server's graceful shutdown for its whole grace period (20 s), waiting for a close_notify."""
    http = stack.enter_context(httpx.Client(verify=plane.tls, timeout=60))
    r = plane.post(
        f"/v1/agents/{agent['id']}/credentials",
        json={"scopes": ["decisions:create", "audit:write"]},
    )
    assert r.status_code == 201, r.text
    cred = r.json()
    client = Client(
        plane.url,
        cred["client_id"],
        cred["client_secret"],
        outbox_path=workdir / f"audit-{agent['id']}.sqlite3",
        timeout=60,
        mode="local",
        http_client=http,
        local=LocalOptions(
            domain=point.domain,
            client_id=point.client_id,
            client_secret=point.client_secret,
            bundle_keys=list(point.keys.values()),
            cache_dir=workdir / f"cache-{agent['id']}",
            poll_interval=0.5,
            long_poll=10,
            status_interval=1,
        ),
    )
    return stack.enter_context(client)


@pytest.fixture
def plane(db_url: str, tmp_path: Path) -> Iterator[Plane]:
    with start_plane(db_url, tmp_path) as started:
        started.domain("payments")
        yield started


def test_a_share_canary_answers_alike_at_the_centre_the_sidecar_and_the_sdk(
    plane: Plane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Local mode's bundle transport is a client of its own (not ``http_client``): it trusts
    # the test CA through SSL_CERT_FILE, as httpx reads it.
    monkeypatch.setenv("SSL_CERT_FILE", str(plane.ca))
    agents = _agents(plane)
    sidecar = plane.point("payments", "payments-opa")
    config = opa_config(
        plane, "payments", "payments-opa", sidecar["credential"]["client_secret"], tmp_path
    )
    point = Point(plane, "payments")
    r = plane.post(f"{BUNDLE}/revisions", json=deny_all())
    assert r.status_code == 201, r.text
    canary = r.json()["revision"]

    with ExitStack() as stack:
        opa = stack.enter_context(start_opa(config, tmp_path))

        def at_sidecar(agent: dict[str, Any]) -> dict[str, Any]:
            body = {"token": agent["token"], "action": INVOICE_READ, "resource": READ}
            result: dict[str, Any] = opa.decide(body)["result"]
            return result

        r = plane.put(f"{BUNDLE}/canary", json={"revision": canary, "percent": 10})
        assert r.status_code == 200, r.text
        centre = _canary_at_centre(plane, agents, canary)
        assigned = {a["id"] for a in agents if on_canary("default", a["id"], "payments", 1000, ())}
        assert centre == assigned

        # The SDK's decision core over the bundle a point pulls now.
        routed, local = point.pull()
        stack.callback(local.close)
        assert routing.ROUTER_PATH in local.bundle.files
        assert local.canary_revision == canary
        at_sdk = set()
        for agent in agents:
            verdict = local.decide(agent["token"], INVOICE_READ, READ, {})
            assert verdict.token_refused is None
            if verdict.document["reasons"] == MAINTENANCE:
                at_sdk.add(agent["id"])
                assert (verdict.revision, verdict.served_by) == (canary, "canary")
            else:
                assert verdict.document["effect"] == "allow"
                assert (verdict.revision, verdict.served_by) == (1, "active")
        assert at_sdk == centre

        # The sidecar, once it runs that bundle.
        assert _eventually(lambda: opa.revision() == routed), opa.log.read_text()[-3000:]
        at_opa = {a["id"] for a in agents if at_sidecar(a)["reasons"] == MAINTENANCE}
        assert at_opa == centre
        assert all(at_sidecar(a)["effect"] == "allow" for a in agents if a["id"] not in centre)

        # Full local-mode clients, one on each side.
        on_agent = next(a for a in agents if a["id"] in centre)
        off_agent = next(a for a in agents if a["id"] not in centre)
        on_client = _local(plane, point, on_agent, tmp_path, stack)
        off_client = _local(plane, point, off_agent, tmp_path, stack)
        assert _eventually(lambda: on_client.decide(INVOICE_READ, READ).reasons == MAINTENANCE)
        decided = on_client.decide(INVOICE_READ, READ)
        assert (decided.revision, decided.served_by) == (canary, "canary")
        decided = off_client.decide(INVOICE_READ, READ)
        assert (decided.effect, decided.revision, decided.served_by) == ("allow", 1, "active")

        # Rollback: the next bundle holds the active revision alone, and so does the next
        # decision at the edge.
        r = plane.post(f"{BUNDLE}/canary/rollback")
        assert r.status_code == 200, r.text
        rolled, local = point.pull()
        stack.callback(local.close)
        assert routing.ROUTER_PATH not in local.bundle.files
        assert rolled != routed
        assert (local.canary_revision, local.canary_agents) == (None, frozenset())
        for agent in agents:
            verdict = local.decide(agent["token"], INVOICE_READ, READ, {})
            assert (verdict.document["effect"], verdict.revision) == ("allow", 1)
        assert _eventually(lambda: opa.revision() == rolled)
        assert all(at_sidecar(a)["effect"] == "allow" for a in agents)
        assert _eventually(lambda: on_client.decide(INVOICE_READ, READ).effect == "allow")
        decided = on_client.decide(INVOICE_READ, READ)
        assert (decided.revision, decided.served_by) == (1, "active")

        # Promotion: the canary revision becomes every agent's, at the edge too.
        r = plane.put(f"{BUNDLE}/canary", json={"revision": canary, "percent": 10})
        assert r.status_code == 200, r.text
        assert _eventually(lambda: at_sidecar(on_agent)["reasons"] == MAINTENANCE)
        r = plane.post(f"{BUNDLE}/canary/promote")
        assert r.status_code == 200, r.text
        promoted, local = point.pull()
        stack.callback(local.close)
        assert (local.canary_revision, local.policy_revision) == (None, canary)
        assert all(
            local.decide(a["token"], INVOICE_READ, READ, {}).document["reasons"] == MAINTENANCE
            for a in agents
        )
        assert _eventually(lambda: opa.revision() == promoted)
        assert all(at_sidecar(a)["reasons"] == MAINTENANCE for a in agents)
        assert _eventually(lambda: off_client.decide(INVOICE_READ, READ).reasons == MAINTENANCE)

        # The decisions the edge logged back say which revision answered and why.
        assert on_client.flush(30)
        assert off_client.flush(30)

        def logged(agent: dict[str, Any], engine: str) -> set[tuple[Any, Any]]:
            listed = plane.get(
                "/v1/decisions", params={"agent_id": agent["id"], "limit": 200}
            ).json()["data"]
            return {(d["revision"], d["served_by"]) for d in listed if d["engine"] == engine}

        everything = {(canary, "canary"), (1, "active"), (canary, "active")}
        assert _eventually(lambda: logged(on_agent, "opa") == everything)
        assert logged(off_agent, "opa") == {(1, "active"), (canary, "active")}
        assert (canary, "canary") in logged(on_agent, "sdk")
        assert (canary, "canary") not in logged(off_agent, "sdk")

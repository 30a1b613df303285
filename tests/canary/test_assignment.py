"""The canary assignment function: deterministic, as documented, and a fair share."""

from __future__ import annotations

import hashlib
import uuid

from control_plane.policy.canary import Routing, bucket, on_canary, route


def _documented(bundle: str, agent_id: str) -> int:
    # The rule as README and policy/canary.py state it, written out independently.
    digest = hashlib.sha256(f"{bundle}:{agent_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def test_ten_percent_of_ten_thousand_agents_is_within_two_points() -> None:
    ids = [str(uuid.UUID(int=uuid.uuid4().int)) for _ in range(10_000)]
    on = [i for i in ids if on_canary("default", i, "payments", 1_000, ())]
    assert 0.08 <= len(on) / len(ids) <= 0.12, len(on)
    # The same agents every time (another process, replica or the edge computes the same).
    assert on == [i for i in ids if on_canary("default", i, "payments", 1_000, ())]
    assert all(bucket("default", i) == _documented("default", i) for i in ids)


def test_share_grows_by_adding_agents_and_depends_on_the_bundle() -> None:
    ids = [str(uuid.uuid4()) for _ in range(2_000)]
    ten = {i for i in ids if bucket("default", i) < 1_000}
    twenty = {i for i in ids if bucket("default", i) < 2_000}
    assert ten < twenty
    other = {i for i in ids if bucket("other", i) < 1_000}
    assert other != ten


def test_named_domains_take_every_agent_and_no_canary_serves_active() -> None:
    agent = str(uuid.uuid4())
    assert on_canary("default", agent, "claims", 0, ("claims",))
    assert not on_canary("default", agent, "payments", 0, ("claims",))
    assert not on_canary("default", agent, "payments", None, ())
    everyone = Routing(active=1, canary=2, basis_points=10_000, shadow=3)
    assert route("default", everyone, agent, "payments").served_by == "canary"
    assert route("default", everyone, agent, "payments").revision == 2
    assert route("default", everyone, agent, "payments").shadow == 3
    none = Routing(active=1, canary=None, basis_points=10_000)
    assert route("default", none, agent, "payments").served_by == "active"
    assert route("default", none, agent, "payments").revision == 1

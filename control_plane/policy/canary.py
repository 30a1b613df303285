"""Which revision of a bundle answers for an agent: the canary assignment (pure, no I/O).

The assignment is a function of the bundle name and the agent id only, so every replica, and
any enforcement point that knows the rule, assigns the same agents:

    bucket(bundle, agent_id) = int.from_bytes(sha256(f"{bundle}:{agent_id}")[:8], "big") % 10_000
    on_canary = domain in canary_domains or bucket < basis_points

``agent_id`` is the agent's UUID in its canonical lower-case hyphenated form; ``basis_points``
is the canary's share in hundredths of a percent (10% is 1,000). A bucket is uniform over
0..9,999 (the first 64 bits of SHA-256, whose bias modulo 10,000 is below 2^-50), so a canary
of p% serves about p% of agents, and raising the share only adds agents (no agent leaves).
At the edge the assignment is the centre's, not recomputed: a domain named by the canary is
served the canary revision alone; for a canary by share, the signed bundle of a domain with
agents on it carries both revisions (namespaced) and the ids of the agents this rule puts on
the canary, and a router answers those agents with the canary revision
(``federation.routing``, ``federation.bundle``), so OPA sidecars and SDKs in local mode do no
hashing of their own. Rollback and promotion give the next bundle one revision again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final, Literal

BUCKETS: Final = 10_000

ServedBy = Literal["active", "canary"]


def bucket(bundle: str, agent_id: str) -> int:
    """The agent's bucket in 0..9,999 (see the module docstring)."""
    digest = hashlib.sha256(f"{bundle}:{agent_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def on_canary(
    bundle: str, agent_id: str, domain: str, basis_points: int | None, domains: Collection[str]
) -> bool:
    """Whether the agent is on the bundle's canary: its domain is named, or its bucket is below
    ``basis_points`` (None or 0: no share)."""
    return domain in domains or bucket(bundle, agent_id) < (basis_points or 0)


@dataclass(frozen=True, slots=True)
class Routing:
    """What a bundle's row says about serving: the active revision, the canary (revision,
    share in basis points, domains) and the shadow revision; None where unset."""

    active: int | None
    canary: int | None = None
    basis_points: int | None = None
    domains: tuple[str, ...] = ()
    shadow: int | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """The revision that answers one decision, why, and the shadow revision to compare with."""

    revision: int | None
    served_by: ServedBy
    shadow: int | None


def route(bundle: str, routing: Routing, agent_id: str, domain: str) -> Route:
    """The revision that answers for ``agent_id`` of ``domain``: the canary revision when a
    canary is set and assigns the agent (``on_canary``), else the active one."""
    if routing.canary is not None and on_canary(
        bundle, agent_id, domain, routing.basis_points, routing.domains
    ):
        return Route(routing.canary, "canary", routing.shadow)
    return Route(routing.active, "active", routing.shadow)

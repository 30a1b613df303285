"""Helpers shared by the policy tests: a real OPA process, small bundles, a baseline input."""

from __future__ import annotations

import copy
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from control_plane.policy.engines.base import LoadedBundle
from tests.fixtures.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
OPA_VERSION = "1.22.2"
IN_CI = os.environ.get("CI", "").lower() == "true"

# The shipped policy allows this input (a level-3 refund inside every limit); tests derive
# other inputs from it.
ALLOWED_INPUT: dict[str, Any] = {
    "agent": {
        "id": "agt-1",
        "name": "refund-bot",
        "domain": "payments",
        "status": "active",
        "autonomy_level": 3,
        "version": {"id": "ver-1", "version": "1.0.0", "state": "active"},
        "labels": {"team": "payments"},
    },
    "action": "payments.refund",
    "resource": {
        "type": "payment",
        "id": "pay-1",
        "amount": 50,
        "region": "eu-west-1",
        "classification": "confidential",
    },
    "context": {"risk": "low"},
    "vouched": {"time": "2024-05-06T10:00:00Z"},
}


def allowed_input() -> dict[str, Any]:
    return copy.deepcopy(ALLOWED_INPUT)


# Per-agent grants in the shipped data are keyed by domain, then agent name: names are unique
# only within a domain. These agents hold per-agent grants there...
AGENT_GRANTS: dict[str, dict[str, list[str]]] = {
    "payments": {
        "refund-bot": ["payments.refund", "payments.refund.read"],
        "payout-bot": ["payments.payout"],
    },
    "claims": {"claims-triage": ["claims.*"]},
}
# ...and these (agent name, domain, action) triples are the same names registered in another
# domain, asking for what only the original agent was granted: always action_not_granted.
CROSS_DOMAIN_NAMES = [
    ("refund-bot", "support", "payments.refund"),
    ("refund-bot", "claims", "payments.refund.read"),
    ("payout-bot", "support", "payments.payout"),
    ("claims-triage", "payments", "claims.claim.close"),
    ("claims-triage", "support", "claims.claim.close"),
]


def agent_input(name: str, domain: str, action: str) -> dict[str, Any]:
    """The allowed baseline with the agent's name and domain and the action replaced."""
    doc = allowed_input()
    doc["agent"].update(name=name, domain=domain)
    doc["action"] = action
    return doc


def find_opa_bin() -> str | None:
    explicit = os.environ.get("AGENTCTL_OPA_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    tools = Path(os.environ.get("AGENTCTL_TOOLS_DIR") or Path.home() / ".cache/agentctl/tools")
    candidate = tools / f"opa-v{OPA_VERSION}" / "opa"
    return str(candidate) if os.access(candidate, os.X_OK) else None


@dataclass
class OpaServer:
    url: str
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@contextmanager
def running_opa(opa_bin: str, log: Path, port: int | None = None) -> Iterator[OpaServer]:
    """`opa run --server` on a loopback port (a free one by default) until the block ends."""
    port = port or free_port()
    argv = [opa_bin, "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error"]
    with log.open("wb") as out:
        process = subprocess.Popen([*argv, "--disable-telemetry"], stdout=out, stderr=out)
    server = OpaServer(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"OPA exited: {log.read_text()}")
            try:
                if httpx.get(server.url + "/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("OPA did not become healthy")
            time.sleep(0.05)
        yield server
    finally:
        server.kill()


def one_module(
    source: str, *, revision: str = "test", data: dict[str, Any] | None = None
) -> LoadedBundle:
    """A bundle of a single `agents.authz` module."""
    return LoadedBundle(modules={"agents/authz.rego": source}, data=data or {}, revision=revision)


def decision_module(body: str) -> str:
    """An `agents.authz` module whose decision is `body` (a Rego expression or rule set)."""
    return f"package agents.authz\n\n{body}\n"

"""The edge follows the canary: a domain named by the canary gets the canary revision in its
signed bundle, so an SDK in local mode decides with it; a rollback returns the edge to the
active revision."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.canary.helpers import BUNDLE, deny_all
from tests.sdk.conftest import Server, database, server  # noqa: F401  (fixtures)
from tests.sdk.localmode import needs_opa
from tests.sdk.test_local_e2e import INVOICE_READ, READ, local, point, register

pytestmark = needs_opa


def _eventually(check: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_an_sdk_in_local_mode_decides_with_the_canary_of_its_domain(
    server: Server,  # noqa: F811
    tmp_path: Path,
) -> None:
    agent = register(server, "payments", "refund-bot", 1)
    edge = local(server.url, agent, point(server, "payments"), tmp_path)
    admin = httpx.Client(base_url=server.url, headers=server.admin, timeout=60)
    try:
        before = edge.decide(INVOICE_READ, READ)
        assert "maintenance" not in before.reasons
        r = admin.post(f"{BUNDLE}/revisions", json=deny_all())
        assert r.status_code == 201, r.text
        canary = r.json()["revision"]
        r = admin.put(f"{BUNDLE}/canary", json={"revision": canary, "domains": ["payments"]})
        assert r.status_code == 200, r.text
        assert _eventually(lambda: edge.decide(INVOICE_READ, READ).reasons == ["maintenance"])

        r = admin.post(f"{BUNDLE}/canary/rollback")
        assert r.status_code == 200, r.text
        assert _eventually(lambda: edge.decide(INVOICE_READ, READ).reasons == list(before.reasons))
    finally:
        edge.close()
        admin.close()

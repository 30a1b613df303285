"""Issue 8, fault 1: an OPA server that restarts comes back empty, and the control plane notices.

A real `agentctl serve` with the `opa` engine decides through a real OPA. OPA is killed and a
fresh one started on the same port: without anyone touching the control plane, decisions return
to the policy's answers within 5 s, and `/readyz` is not ready while OPA lacks the revision.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.fixtures.decisions import REFUND, decider
from tests.fixtures.servers import free_port, server_env, serving
from tests.policy.helpers import running_opa

ADMIN = "acp_op_opa-restart-test-admin-token-0123456789abcdef"


async def test_restarted_opa_gets_the_active_revision_back(
    opa_bin: str, db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    opa_url = f"http://127.0.0.1:{port}"
    env = server_env(
        db_url,
        tmp_path,
        AGENTCTL_ADMIN_TOKEN=ADMIN,
        AGENTCTL_POLICY_ENGINE="opa",
        AGENTCTL_OPA_URL=opa_url,
        AGENTCTL_OPA_BIN=opa_bin,
    )
    admin = {"Authorization": f"Bearer {ADMIN}"}
    first = running_opa(opa_bin, tmp_path / "opa-1.log", port)
    opa = first.__enter__()
    try:
        with serving(env, tmp_path / "serve.log") as url:
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                me = await decider(client, admin)

                async def decide() -> dict[str, object]:
                    r = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
                    assert r.status_code == 200, r.text
                    body: dict[str, object] = r.json()
                    return body

                before = await decide()
                assert (before["effect"], before["engine"]) == ("allow", "opa")

                opa.kill()
                down = await client.get("/readyz")
                assert down.status_code == 503, down.text
                assert (await decide())["effect"] == "deny"

                with running_opa(opa_bin, tmp_path / "opa-2.log", port) as fresh:
                    async with httpx.AsyncClient(base_url=fresh.url) as raw:
                        held = (await raw.get("/v1/policies")).json()["result"]
                    assert held == []  # the fresh OPA is empty
                    started = time.monotonic()
                    answers = []
                    while True:
                        body = await decide()
                        answers.append(body["effect"])
                        if body["effect"] == "allow":
                            break
                        assert time.monotonic() - started < 5, answers
                        time.sleep(0.1)
                    recovered = time.monotonic() - started
                    print(f"decisions back after {recovered:.2f} s: {answers}")
                    assert body["revision"] == before["revision"]
                    ready = await client.get("/readyz")
                    assert ready.status_code == 200, ready.text
    finally:
        first.__exit__(None, None, None)


async def test_readiness_checks_what_opa_holds(opa_bin: str, db_url: str, tmp_path: Path) -> None:
    """A readiness probe that finds OPA emptied loads the active revision again before it
    answers ready: it checks OPA's marker rather than trusting that the load still holds."""
    port = free_port()
    env = server_env(
        db_url,
        tmp_path,
        AGENTCTL_ADMIN_TOKEN=ADMIN,
        AGENTCTL_POLICY_ENGINE="opa",
        AGENTCTL_OPA_URL=f"http://127.0.0.1:{port}",
    )
    with (
        running_opa(opa_bin, tmp_path / "opa.log", port) as opa,
        serving(env, tmp_path / "serve.log") as url,
    ):
        async with httpx.AsyncClient(base_url=opa.url) as raw:
            policies = (await raw.get("/v1/policies")).json()["result"]
            assert policies  # readiness loaded the active revision
            for policy in policies:  # what a restart does, without the restart
                assert (await raw.delete(f"/v1/policies/{policy['id']}")).status_code == 200
            assert (await raw.get("/v1/data/__agentctl__")).json() == {}
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                assert (await client.get("/readyz")).status_code == 200
            marker = (await raw.get("/v1/data/__agentctl__")).json()["result"]
            assert marker["revision"] == "1"
            assert marker["digest"].startswith("sha256:")
            assert {p["id"] for p in (await raw.get("/v1/policies")).json()["result"]} == {
                p["id"] for p in policies
            }

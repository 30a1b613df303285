"""Installed as a user installs it: wheels and sdists into fresh venvs, run from empty folders.

The server (agent-control-plane) serves on SQLite in an empty folder and on an empty PostgreSQL
database and decides with the shipped default policy; the SDK (agent-control-plane-sdk) installs
without any of the server's dependencies and talks to that server. Slow (`-m "not packaging"`
leaves them out locally); CI runs them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from control_plane import __version__
from tests.conftest import PG_URL, _pg_admin, _pg_drop
from tests.fixtures.decisions import REFUND
from tests.fixtures.servers import free_port
from tests.packaging.conftest import Dists, clean_env, install, make_venv, run

pytestmark = pytest.mark.packaging

ADMIN = "acp_op_packaging-admin-token-0123456789abcdef"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def server_bin(tmp_path_factory: pytest.TempPathFactory, dists: Dists, wheelhouse: Path) -> Path:
    """The bin/ of a fresh venv holding the server installed from its wheel."""
    python = make_venv(tmp_path_factory.mktemp("server-wheel") / "venv")
    install(python, wheelhouse, dists, "agent-control-plane")
    return python.parent


@contextmanager
def installed_server(bin_dir: Path, workdir: Path, **env: str) -> Iterator[str]:
    """`agentctl serve` of an installed server, run from `workdir`; its URL once ready."""
    port = free_port()
    log = workdir.parent / f"{workdir.name}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [bin_dir / "agentctl", "serve", "--port", str(port)],
            cwd=workdir,
            env=clean_env(AGENTCTL_ADMIN_TOKEN=ADMIN, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()
    # The packaged policy decides with the module committed for it (not one compiled at start).
    assert "default_policy_module_not_used" not in log.read_text(), log.read_text()


def register_agent(url: str) -> dict[str, Any]:
    """A domain, an agent with an active version, and a credential; {agent, client_id, secret}."""
    with httpx.Client(base_url=url, headers=ADMIN_HEADERS, timeout=30) as c:
        assert c.post("/v1/domains", json={"name": "payments"}).status_code == 201
        agent = c.post(
            "/v1/agents",
            json={"name": "refund-bot", "domain": "payments", "owner": "o", "autonomy_level": 1},
        ).json()
        version = c.post(
            f"/v1/agents/{agent['id']}/versions",
            json={
                "version": "1.0.0",
                "model_name": "m",
                "model_version": "1",
                "artifact_digest": DIGEST,
            },
        ).json()
        for step in ("approve", "activate"):
            r = c.post(f"/v1/agents/{agent['id']}/versions/{version['id']}/{step}")
            assert r.status_code == 200, r.text
        cred = c.post(
            f"/v1/agents/{agent['id']}/credentials",
            json={"scopes": ["decisions:create", "audit:write"]},
        ).json()
    return {"agent": agent, "client_id": cred["client_id"], "secret": cred["client_secret"]}


def decide_over_http(url: str) -> dict[str, Any]:
    """Register an agent, take its token and ask for the README's refund: the decision."""
    me = register_agent(url)
    with httpx.Client(base_url=url, timeout=30) as c:
        token = c.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(me["client_id"], me["secret"]),
        )
        assert token.status_code == 200, token.text
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        r = c.post("/v1/decisions", json=REFUND, headers=bearer)
        assert r.status_code == 200, r.text
        decision: dict[str, Any] = r.json()
        assert c.get("/healthz").json()["version"] == __version__
    return decision


def assert_default_policy_decided(decision: dict[str, Any]) -> None:
    assert (decision["effect"], decision["allow"], decision["reasons"]) == ("allow", True, [])
    assert (decision["bundle"], decision["revision"], decision["engine"]) == ("default", 1, "wasm")


def test_server_wheel_serves_sqlite_from_an_empty_folder(server_bin: Path, tmp_path: Path) -> None:
    assert run(server_bin / "agentctl", "--version").strip() == f"agentctl {__version__}"
    empty = tmp_path / "empty"
    empty.mkdir()
    with installed_server(server_bin, empty) as url:
        assert_default_policy_decided(decide_over_http(url))
    assert (empty / ".agentctl" / "agentctl.db").is_file()  # the embedded default


@pytest.mark.postgres
def test_server_wheel_serves_postgresql(server_bin: Path, tmp_path: Path) -> None:
    assert PG_URL is not None
    name = f"acp_pkg_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f"CREATE DATABASE {name}"))  # empty: the wheel's migrations build it
    try:
        db = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        empty = tmp_path / "empty"
        empty.mkdir()
        with installed_server(server_bin, empty, AGENTCTL_DATABASE_URL=db) as url:
            assert_default_policy_decided(decide_over_http(url))
    finally:
        asyncio.run(_pg_drop(name))


SDK_ONLY = """
import importlib.util, json, sys
absent = ["control_plane", "fastapi", "sqlalchemy", "uvicorn", "asyncpg", "alembic"]
present = [name for name in absent if importlib.util.find_spec(name) is not None]
assert not present, f"the SDK's environment holds server dependencies: {present}"

from agent_sdk import Client, __version__
url, client_id, secret, outbox = sys.argv[1:5]
with Client(url, client_id, secret, outbox_path=outbox) as client:
    decision = client.decide("payments.refund", json.loads(sys.argv[5]))
    client.audit({"action": "payments.refund", "resource": {"type": "order", "id": "o-1"},
                  "status": "succeeded", "decision_id": str(decision.decision_id)})
    delivered = client.flush(30)
    print(json.dumps({"version": __version__, "effect": decision.effect,
                      "delivered": delivered, "pending": client.pending()}))
"""


def test_sdk_wheel_alone_against_the_installed_server(
    server_bin: Path, dists: Dists, wheelhouse: Path, tmp_path: Path
) -> None:
    python = make_venv(tmp_path / "sdk-venv")
    install(python, wheelhouse, dists, dists.sdk_wheel)
    empty = tmp_path / "empty"
    empty.mkdir()
    with installed_server(server_bin, empty) as url:
        me = register_agent(url)
        resource = json.dumps(REFUND["resource"])
        out = run(
            python, "-c", SDK_ONLY, url, me["client_id"], me["secret"], tmp_path / "outbox.db",
            resource, cwd=tmp_path,
        )  # fmt: skip
        with httpx.Client(base_url=url, headers=ADMIN_HEADERS) as c:
            stored = c.get("/v1/audit/records", params={"domain": "payments"}).json()["data"]
    result = json.loads(out)
    assert result == {"version": __version__, "effect": "allow", "delivered": True, "pending": 0}
    # The decision's own record, and the one the SDK delivered from its outbox.
    assert sorted((r["kind"], r["action"]) for r in stored) == [
        ("action", "payments.refund"),
        ("decision", "payments.refund"),
    ]


def test_server_sdist_installs_and_serves(dists: Dists, wheelhouse: Path, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv")
    install(python, wheelhouse, dists, dists.server_sdist)  # built by pip: hatchling, offline
    empty = tmp_path / "empty"
    empty.mkdir()
    with installed_server(python.parent, empty) as url:
        assert_default_policy_decided(decide_over_http(url))


def test_sdk_sdist_installs(dists: Dists, wheelhouse: Path, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv")
    install(python, wheelhouse, dists, dists.sdk_sdist)
    probe = (
        "import importlib.util, pathlib, agent_sdk; "
        "assert importlib.util.find_spec('control_plane') is None; "
        "assert (pathlib.Path(agent_sdk.__file__).parent / 'py.typed').is_file(); "
        "print(agent_sdk.__version__)"
    )
    assert run(python, "-c", probe, cwd=tmp_path).strip() == __version__

"""``agentctl`` as a user runs it: a real server process, the README walk-through, the CLI."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).parent.parent
TOKEN_LINE = re.compile(r"export AGENTCTL_TOKEN=(acp_op_\S+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _env(db_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCTL_")}
    env.update(
        AGENTCTL_DATABASE_URL=db_url,
        AGENTCTL_DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def agentctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "control_plane", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[str]:
    port = _free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "control_plane", "serve", "--port", str(port)],
            env=env,
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


def _walkthrough() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Walk-through", 1)[1]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


def test_serve_bootstrap_and_readme_walkthrough(db_url: str, tmp_path: Path) -> None:
    env = _env(db_url, tmp_path)
    with serving(env, tmp_path / "first.log") as url:
        first_log = (tmp_path / "first.log").read_text()
        tokens = TOKEN_LINE.findall(first_log)
        assert len(tokens) == 1, first_log
        token = tokens[0]

        script = _walkthrough().replace("http://127.0.0.1:8080", url)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env=env | {"AGENTCTL_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        out = done.stdout
        assert '"name":"payments"' in out
        assert "HTTP/1.1 200 OK" in out
        assert 'etag: "1"' in out.lower()
        assert '"autonomy_level":2' in out
        assert '"state":"active"' in out
        assert '"status":"suspended"' in out
        assert "problem" not in out
        # After the one banner line, the token never appears in the server's log.
        later_log = (tmp_path / "first.log").read_text()[len(first_log) :]
        assert token not in later_log

    with serving(env, tmp_path / "second.log"):
        # Printed once: a second start keeps the stored hash and prints nothing.
        assert TOKEN_LINE.search((tmp_path / "second.log").read_text()) is None


def test_admin_token_from_settings(db_url: str, tmp_path: Path) -> None:
    token = "acp_op_configured-admin-token-abcdefghijklmnop"
    env = _env(db_url, tmp_path, AGENTCTL_ADMIN_TOKEN=token)
    with serving(env, tmp_path / "serve.log") as url:
        assert TOKEN_LINE.search((tmp_path / "serve.log").read_text()) is None
        r = httpx.get(f"{url}/v1/agents", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200


def test_operators_create_cli(db_url: str, tmp_path: Path) -> None:
    env = _env(db_url, tmp_path, AGENTCTL_ADMIN_TOKEN="acp_op_cli-admin-token-abcdefghijklmnop")
    bad = agentctl("operators", "create", "--role", "domain_admin", env=env)
    assert bad.returncode == 2
    assert "needs at least one domain" in bad.stderr
    unknown = agentctl("operators", "create", "--role", "domain_admin", "--domain", "x", env=env)
    assert unknown.returncode == 2
    assert "does not exist" in unknown.stderr
    with serving(env, tmp_path / "serve.log") as url:
        admin = {"Authorization": "Bearer acp_op_cli-admin-token-abcdefghijklmnop"}
        assert httpx.post(f"{url}/v1/domains", json={"name": "payments"}, headers=admin).is_success
        made = agentctl(
            "operators", "create", "--role", "domain_admin", "--domain", "payments", env=env
        )
        assert made.returncode == 0, made.stderr
        created = json.loads(made.stdout)
        assert created["role"] == "domain_admin"
        assert created["domains"] == ["payments"]
        h = {"Authorization": f"Bearer {created['token']}"}
        r = httpx.post(
            f"{url}/v1/agents", json={"name": "a", "domain": "payments", "owner": "o"}, headers=h
        )
        assert r.status_code == 201
        listed = httpx.get(f"{url}/v1/operators", headers=admin).text
        assert created["token"] not in listed
        assert created["token"] not in (tmp_path / "serve.log").read_text()


def test_migrate_is_idempotent(db_url: str, tmp_path: Path) -> None:
    env = _env(db_url, tmp_path)
    for _ in range(2):
        done = agentctl("migrate", env=env)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["operators", "--help"]])
def test_help(args: list[str], tmp_path: Path) -> None:
    done = agentctl(*args, env=_env("sqlite+aiosqlite:///unused.db", tmp_path))
    assert done.returncode == 0
    assert "usage: agentctl" in done.stdout

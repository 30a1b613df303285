"""``agentctl`` as a user runs it: a real server process, the README walk-through, the CLI."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.fixtures.servers import ROOT, agentctl, server_env, serving

TOKEN_LINE = re.compile(r"export AGENTCTL_TOKEN=(acp_op_\S+)")


def _walkthrough() -> str:
    """Every bash block of the README's walk-through sections, in order."""
    readme = (ROOT / "README.md").read_text()
    blocks = []
    for section in readme.split("## Walk-through")[1:]:
        section = section.split("\n## ", 1)[0]
        blocks += [b.split("```", 1)[0] for b in section.split("```bash\n")[1:]]
    return "\n".join(blocks)


def test_serve_bootstrap_and_readme_walkthrough(db_url: str, tmp_path: Path) -> None:
    env = server_env(db_url, tmp_path)
    with serving(env, tmp_path / "first.log") as url:
        first_log = (tmp_path / "first.log").read_text()
        tokens = TOKEN_LINE.findall(first_log)
        assert len(tokens) == 1, first_log
        token = tokens[0]

        script = _walkthrough().replace("http://127.0.0.1:8080", url)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            # The audit walk-through calls agentctl: the one of this environment.
            env=env
            | {"AGENTCTL_TOKEN": token, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"},
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
        # The credential walk-through: claims printed, /me answered, JWKS published, and the
        # revoked token refused at the end.
        assert '"scope": "decisions:create"' in out
        assert '"domain": "payments"' in out
        assert '"keys":[{"kty":"OKP"' in out
        assert out.count('"name":"refund-bot"') >= 2
        # The decisions walk-through: allow with a redact obligation, approval, residency deny,
        # the record and the policy revision.
        assert '"effect":"allow"' in out
        assert '"type":"redact"' in out
        approval = (
            '"effect":"require_approval","allow":false,"reasons":["amount_requires_approval"]'
        )
        assert approval in out
        # Both residency denials: the order's declared class, and the claimed `public`.
        assert out.count('"reasons":["residency_violation"]') >= 2
        assert '"bundle":"default","revision":1,"digest":"sha256:' in out
        assert out.count("urn:agentctl:problem:unauthorized") == 1
        # The audit walk-through: stored, read back, verified offline, tampering found.
        assert '"status":"stored"' in out
        assert "ok: payments.jsonl: 8 records verified" in out
        assert "BAD: payments.jsonl: first bad index 7" in out
        assert "exit code 1" in out
        assert "ok: payments: 8 records verified" in out
        # Approvals, budgets, the kill switch, events.
        assert '"effect":"allow","allow":true,"reasons":["approved"]' in out
        # (the operator's side through agentctl: tables, and -o json for the events page)
        assert re.search(r"payments\.refund\s+pending\s+amount_requires_approval", out), out
        assert re.search(r"^state\s+approved\s*$", out, re.MULTILINE), out
        assert re.search(r"^comment\s+refund checked\s*$", out, re.MULTILINE), out
        assert re.search(r"^actions_per_minute\s+10\s+\d+\s+\d+\s", out, re.MULTILINE), out
        assert re.search(r"^spend_per_day\s+500000\s", out, re.MULTILINE), out
        assert re.search(r"^suspended_at\s+\d{4}-", out, re.MULTILINE), out
        assert re.search(r"^suspended_at\s+-\s*$", out, re.MULTILINE), out
        assert "decision while suspended: HTTP 401" in out
        # Safe policy change: shadow differences summarised, canary then rollback, promotion.
        assert "allow->require_approval" in out
        assert '"revision":2,"engine":"wasm","served_by":"canary"' in out
        assert '"revision":1,"engine":"wasm","served_by":"active"' in out
        assert "canary 2 (10.0% + domains payments)" in out
        assert '"type": "approval.resolved.v1"' in out
        # Safe policy change: the impact report, from agentctl (a table) and over HTTP.
        assert "Impact of default revision" in out
        assert "allow->require_approval" in out
        assert '"changes":{"allow->require_approval":' in out
        assert '"governance_gate":1' in out
        # After the one banner line, the token never appears in the server's log.
        later_log = (tmp_path / "first.log").read_text()[len(first_log) :]
        assert token not in later_log

    with serving(env, tmp_path / "second.log"):
        # Printed once: a second start keeps the stored hash and prints nothing.
        assert TOKEN_LINE.search((tmp_path / "second.log").read_text()) is None


def test_admin_token_from_settings(db_url: str, tmp_path: Path) -> None:
    token = "acp_op_configured-admin-token-abcdefghijklmnop"
    env = server_env(db_url, tmp_path, AGENTCTL_ADMIN_TOKEN=token)
    with serving(env, tmp_path / "serve.log") as url:
        assert TOKEN_LINE.search((tmp_path / "serve.log").read_text()) is None
        r = httpx.get(f"{url}/v1/agents", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        assert "server" not in r.headers  # no server header naming the software


def test_operators_create_cli(db_url: str, tmp_path: Path) -> None:
    env = server_env(
        db_url, tmp_path, AGENTCTL_ADMIN_TOKEN="acp_op_cli-admin-token-abcdefghijklmnop"
    )
    bad = agentctl("operators", "create", "--role", "domain_admin", env=env)
    assert bad.returncode == 2
    assert "needs at least one domain" in bad.stderr
    # One line in the validator's words, not pydantic's report with its links.
    assert bad.stderr.strip().splitlines() == [
        "error: validation_failed: a domain_admin needs at least one domain"
    ]
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
    env = server_env(db_url, tmp_path)
    for _ in range(2):
        done = agentctl("migrate", env=env)
        assert done.returncode == 0, done.stderr


def test_a_new_sqlite_database_is_the_owners_alone(tmp_path: Path) -> None:
    """The embedded default keeps the audit log, decisions and hashed secrets in the data dir:
    created 0700, the database file 0600 (as the key-encryption key beside it)."""
    data = tmp_path / "data"
    env = server_env(f"sqlite+aiosqlite:///{data / 'agentctl.db'}", tmp_path)
    done = agentctl("migrate", env=env)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "agentctl.db").stat().st_mode) == 0o600


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["operators", "--help"]])
def test_help(args: list[str], tmp_path: Path) -> None:
    done = agentctl(*args, env=server_env("sqlite+aiosqlite:///unused.db", tmp_path))
    assert done.returncode == 0
    assert "usage: agentctl" in done.stdout.lower()


def test_the_http_commands_start_without_the_server_stack() -> None:
    # agentctl's commands over HTTP (all but serve, migrate, openapi, keys and a bootstrap
    # operators create) start in about a second here; importing the web framework, the ORM or
    # the engine added a second or more to each.
    heavy = ("fastapi", "starlette", "sqlalchemy", "sqlmodel", "wasmtime", "opapywasm")
    code = (
        "import sys; from control_plane.cli import app; "
        "from typer.main import get_command; get_command(app); "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AGENTCTL_POLICY_ENGINE", "lua"),
        ("AGENTCTL_DATABASE_URL", "mysql://db/x"),
        ("AGENTCTL_ADMIN_TOKEN", "hunter2"),
        ("AGENTCTL_KEY_ENCRYPTION_KEY", "too-short"),
    ],
)
def test_bad_settings_are_reported_plainly(name: str, value: str, tmp_path: Path) -> None:
    env = server_env("sqlite+aiosqlite:///unused.db", tmp_path) | {name: value}
    done = agentctl("migrate", env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")
    assert "Traceback" not in done.stderr
    assert value not in done.stderr  # a bad secret is not echoed either

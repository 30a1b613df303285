"""``agentctl policy push`` against a running server, and ``agentctl policy test``."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.fixtures.servers import ROOT, agentctl, server_env, serving

ADMIN = "acp_op_policy-cli-admin-token-0123456789abcdef"


@pytest.mark.parametrize("where", ["AGENTCTL_OPA_BIN", "installed"])
def test_policy_test_runs_the_shipped_tests(where: str, tmp_path: Path, opa_bin: str) -> None:
    """With AGENTCTL_OPA_BIN, or the pinned OPA where scripts/install-opa.sh puts it."""
    env = server_env("sqlite+aiosqlite:///unused.db", tmp_path)
    if where == "AGENTCTL_OPA_BIN":
        env["AGENTCTL_OPA_BIN"] = opa_bin
    else:
        env["AGENTCTL_TOOLS_DIR"] = str(Path(opa_bin).parent.parent)
    done = agentctl("policy", "test", str(ROOT / "policies"), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout
    assert "FAIL" not in done.stdout


def test_policy_test_without_opa_says_how_to_install_it(tmp_path: Path) -> None:
    env = server_env("sqlite+aiosqlite:///unused.db", tmp_path)
    env["AGENTCTL_OPA_BIN"] = str(tmp_path / "no-opa")
    done = agentctl("policy", "test", str(ROOT / "policies"), env=env)
    assert done.returncode == 2
    assert "make opa" in done.stderr
    assert "scripts/install-opa.sh" in done.stderr


def test_policy_test_reports_failures(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    with (policies / "agents" / "authz_test.rego").open("a") as tests:
        tests.write(
            "\ntest_everything_is_allowed if {\n"
            '\td := decision_for(with_agent({"status": "suspended"}))\n'
            "\td.allow == true\n}\n"
        )
    done = agentctl(
        "policy", "test", str(policies), env=server_env("sqlite+aiosqlite:///x.db", tmp_path)
    )
    assert done.returncode != 0
    assert "test_everything_is_allowed" in done.stdout


def test_policy_push(db_url: str, tmp_path: Path) -> None:
    env = server_env(db_url, tmp_path, AGENTCTL_ADMIN_TOKEN=ADMIN)
    with serving(env, tmp_path / "serve.log") as url:
        cli_env = env | {"AGENTCTL_URL": url, "AGENTCTL_TOKEN": ADMIN}
        done = agentctl("policy", "push", str(ROOT / "policies"), "--activate", env=cli_env)
        assert done.returncode == 0, done.stderr
        assert "revision 2" in done.stdout
        assert "activated revision 2" in done.stdout
        bundle = httpx.get(
            f"{url}/v1/policies", headers={"Authorization": f"Bearer {ADMIN}"}
        ).json()["data"][0]
        assert bundle["active_revision"] == 2

        bad = tmp_path / "bad"
        (bad / "agents").mkdir(parents=True)
        (bad / "agents" / "authz.rego").write_text("package agents.authz\n\nallow {\n\ttrue\n}\n")
        done = agentctl("policy", "push", str(bad), env=cli_env)
        assert done.returncode == 1
        assert "agents/authz.rego:3" in done.stderr

        done = agentctl("policy", "push", str(ROOT / "policies"), env=env | {"AGENTCTL_URL": url})
        assert done.returncode != 0
        assert "AGENTCTL_TOKEN" in done.stderr
        done = agentctl("policy", "push", str(tmp_path / "missing"), env=cli_env)
        assert done.returncode == 2

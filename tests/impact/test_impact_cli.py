"""`agentctl policy impact` against a real server: the CI gate's exit codes and its JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from control_plane.cli import main
from tests.fixtures.servers import ROOT, server_env, serving
from tests.impact.support import (
    BUNDLE,
    refund_reads_for_all,
    store_decisions,
    tighter_refunds,
)

ADMIN = "acp_op_cli-operator-admin-token-0123456789abcdef"
SCHEMA = json.loads((ROOT / "openapi" / "impact-report.schema.json").read_text())

pytestmark = pytest.mark.opa


def _policy_dir(root: Path, body: dict[str, Any]) -> Path:
    for path, text in body["modules"].items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / "data.json").write_text(json.dumps(body["data"]))
    return root


async def test_exit_codes_and_json_report(
    db_url: str,
    tmp_path: Path,
    opa_bin: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = server_env(db_url, tmp_path, AGENTCTL_ADMIN_TOKEN=ADMIN, AGENTCTL_OPA_BIN=opa_bin)
    with serving(env, tmp_path / "serve.log") as url:
        monkeypatch.setenv("AGENTCTL_URL", url)
        monkeypatch.setenv("AGENTCTL_TOKEN", ADMIN)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            stored = await store_decisions(client, admin, 24)
        capsys.readouterr()

        def run(*args: str) -> tuple[int, str, str]:
            code = main(["policy", "impact", *args])
            out, err = capsys.readouterr()
            return code, out, err

        # A loosening: other-bot's denied refund reads become allows. The gate fails (1).
        looser = _policy_dir(tmp_path / "looser", refund_reads_for_all())
        code, out, err = run(str(looser), "--fail-on", "deny->allow,allow->deny", "-o", "json")
        assert code == 1, err
        report = json.loads(out)
        jsonschema.validate(report, SCHEMA)
        reads = [d for d in stored.values() if d["request"]["action"] == "payments.refund.read"]
        assert report["changes"] == {"deny->allow": len(reads)}
        assert err.strip().splitlines()[-1].startswith("error: changes named in --fail-on")
        assert "deny->allow (6)" in err

        # A tightening: allow->require_approval only. Listed changes do not occur (0).
        tighter = _policy_dir(tmp_path / "tighter", tighter_refunds(50))
        code, out, err = run(str(tighter), "--fail-on", "deny->allow", "--since", "7d")
        assert code == 0, err
        assert "allow->require_approval" in out
        assert "Changed decisions" in out
        # By revision number, with the change that does occur named: 1.
        revision = report["revision"] + 1
        code, out, err = run(str(revision), "--fail-on", "allow->require_approval", "-o", "json")
        assert code == 1, err
        jsonschema.validate(json.loads(out), SCHEMA)
        assert json.loads(out)["revision"] == revision
        # Filters narrow what is replayed: no refund in the window, nothing fails.
        code, out, err = run(
            str(revision), "--action", "payments.invoice.read",
            "--fail-on", "allow->require_approval", "-o", "json",
        )  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["changes"] == {}

        # Usage errors: 2, one line.
        for args in (
            [str(revision), "--fail-on", "deny->maybe"],
            [str(revision), "--fail-on", "allow->allow"],
            [str(revision), "--since", "last tuesday"],
            [str(tmp_path / "missing")],
        ):
            code, out, err = run(*args)
            assert code == 2, (args, out, err)
            assert "Traceback" not in err
        # A revision that does not exist: the server's 404, exit 3.
        code, out, err = run("999")
        assert code == 3, err
        assert err.startswith("error: not_found")

        # Candidates are never activated.
        with httpx.Client(base_url=url, headers=admin) as c:
            [bundle] = c.get("/v1/policies").json()["data"]
        assert bundle["name"] == BUNDLE
        assert bundle["active_revision"] == 1

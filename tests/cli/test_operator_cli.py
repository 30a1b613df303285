"""The operator CLI over HTTP: every verb against a real `agentctl serve` (see conftest.py).

Each command runs in process (`control_plane.cli.main`) against a server process; `--output
json` answers are validated against the response schema the OpenAPI document gives the
operation, and every failure is one line on stderr carrying the problem's code, with the exit
code scripts test (1 error, 2 usage, 3 not found, 4 denied).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from control_plane import __version__
from tests.cli.conftest import ADMIN
from tests.fixtures.factories import digest
from tests.fixtures.oauth2 import basic
from tests.fixtures.servers import free_port


def test_every_verb(cli: Any, tmp_path: Path) -> None:
    url = cli.url
    # domains
    cli("domains", "create", "payments", "--description", "money out", "-o", "json").json(
        "domains-create"
    )
    assert cli("domains", "get", "payments", "-o", "json").json("domains-get")["name"] == "payments"
    assert [
        d["name"] for d in cli("domains", "list", "-o", "json").json("domains-list")["data"]
    ] == ["payments"]
    table = cli("domains", "list")
    assert table.code == 0
    assert "payments" in table.out
    assert "money out" in table.out

    # agents
    agent = cli(
        "agents", "create", "refund-bot", "--domain", "payments", "--owner", "team-a",
        "--autonomy-level", "1", "--label", "tier=gold", "-o", "json",
    ).json("agents-create")  # fmt: skip
    aid = agent["id"]
    assert agent["labels"] == {"tier": "gold"}
    listed = cli("agents", "list", "--domain", "payments", "--label", "tier=gold", "-o", "json")
    assert [a["id"] for a in listed.json("agents-list")["data"]] == [aid]
    assert "refund-bot" in cli("agents", "list").out
    assert cli("agents", "get", aid, "-o", "json").json("agents-get")["owner"] == "team-a"
    updated = cli("agents", "update", aid, "--autonomy-level", "2", "-o", "json").json(
        "agents-update"
    )
    assert updated["autonomy_level"] == 2
    assert (
        cli("agents", "suspend", aid, "-o", "json").json("agents-suspend")["status"] == "suspended"
    )
    assert cli("agents", "resume", aid, "-o", "json").json("agents-resume")["status"] == "active"

    # versions
    version = cli(
        "versions", "register", aid, "--version", "1.0.0", "--model-name", "m",
        "--model-version", "1", "--artifact-digest", digest("1.0.0"), "-o", "json",
    ).json("agents-register_version")  # fmt: skip
    vid = version["id"]
    assert (
        cli("versions", "approve", aid, vid, "-o", "json").json("agents-approve_version")["state"]
        == "approved"
    )
    assert (
        cli("versions", "activate", aid, vid, "-o", "json").json("agents-activate_version")["state"]
        == "active"
    )
    assert (
        cli("versions", "get", aid, vid, "-o", "json").json("agents-get_version")["version"]
        == "1.0.0"
    )
    assert [
        v["id"]
        for v in cli("versions", "list", aid, "-o", "json").json("agents-list_versions")["data"]
    ] == [vid]
    assert "1.0.0" in cli("versions", "list", aid).out

    # credentials, then a decision and an audit record by the agent itself
    cred = cli(
        "credentials", "create", aid, "--scope", "decisions:create", "--scope", "audit:write",
        "-o", "json",
    ).json("credentials-create")  # fmt: skip
    assert cred["client_secret"]
    creds = cli("credentials", "list", aid, "-o", "json").json("credentials-list")["data"]
    assert [c["client_id"] for c in creds] == [cred["client_id"]]
    assert "client_secret" not in creds[0]
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    (tmp_path / "key.jwk").write_text(json.dumps(jwk))
    keyed = cli(
        "credentials", "create", aid, "--scope", "decisions:create",
        "--jwk", str(tmp_path / "key.jwk"), "-o", "json",
    ).json("credentials-create")  # fmt: skip
    assert (keyed["auth_method"], keyed["client_secret"]) == ("private_key_jwt", None)
    with httpx.Client(base_url=url, timeout=30) as c:
        token = c.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers=basic(cred["client_id"], cred["client_secret"]),
        ).json()["access_token"]
        agent_h = {"Authorization": f"Bearer {token}"}
        decision = c.post(
            "/v1/decisions",
            json={
                "action": "payments.refund",
                "resource": {"type": "order", "id": "o-1", "amount": 50},
            },
            headers=agent_h,
        ).json()
        r = c.post(
            "/v1/audit/records",
            json={"records": [{"id": str(uuid.uuid4()), "timestamp": "2026-01-01T00:00:00Z",
                               "action": "payments.refund", "status": "succeeded",
                               "resource": {"type": "order", "id": "o-1"}}]},
            headers=agent_h,
        )  # fmt: skip
        assert r.status_code == 200, r.text

    # decisions
    decisions = cli("decisions", "list", "--agent-id", aid, "-o", "json").json("decisions-list")[
        "data"
    ]
    assert [d["id"] for d in decisions] == [decision["decision_id"]]
    assert "payments.refund" in cli("decisions", "list").out
    replays = cli("decisions", "replays", decision["decision_id"], "-o", "json")
    assert replays.json("decisions-list_replays")["data"] == []

    # audit
    records = cli("audit", "list", "--domain", "payments", "-o", "json").json("audit-list_records")[
        "data"
    ]
    # The agent's suspension and resumption above are kill-switch records.
    assert {r["kind"] for r in records} == {"decision", "action", "kill_switch"}
    record_id = next(r["id"] for r in records if r["kind"] == "action")
    assert (
        cli("audit", "get", record_id, "-o", "json").json("audit-get_record")["record"]["id"]
        == record_id
    )
    for _ in range(100):  # the checkpointer runs every 0.2 s here
        checkpoints = cli("audit", "checkpoints", "--domain", "payments", "-o", "json")
        if checkpoints.json("audit-list_checkpoints")["data"]:
            break
        time.sleep(0.1)
    note = cli("audit", "checkpoint", "payments")  # a C2SP signed note, printed as served
    assert note.code == 0, note.err
    assert note.out.splitlines()[1].isdigit()
    assert any(line.startswith("\u2014 ") for line in note.out.splitlines())
    keys = cli("audit", "keys", "-o", "json").json("audit-list_keys")["keys"]
    assert keys[0]["verifier_key"] in cli("audit", "keys").out
    verified = cli("audit", "verify", "--url", url, "--output", "json")
    assert verified.code == 0
    assert json.loads(verified.out)["ok"] is True
    export = tmp_path / "payments.jsonl"
    done = cli("audit", "export", "--domain", "payments", "-o", str(export), "-q")
    assert done.code == 0, done.err
    # the suspension, the resumption, the decision and the record the agent sent
    assert len(export.read_text().splitlines()) == 4

    # policy
    bundles = cli("policy", "list", "-o", "json").json("policies-list_bundles")["data"]
    assert [(b["name"], b["active_revision"]) for b in bundles] == [("default", 1)]
    revisions = cli("policy", "revisions", "default", "-o", "json").json("policies-list_revisions")
    assert [r["revision"] for r in revisions["data"]] == [1]
    assert (
        cli("policy", "get", "1", "-o", "json")
        .json("policies-get_revision")["digest"]
        .startswith("sha256:")
    )
    assert (
        cli("policy", "activate", "1", "-o", "json").json("policies-activate_revision")["active"]
        is True
    )
    assert "default" in cli("policy", "list").out

    # operators
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        made = c.post("/v1/operators", json={"name": "auditor", "role": "auditor"}).json()
    operators = cli("operators", "list", "-o", "json").json("operators-list")["data"]
    assert made["id"] in [o["id"] for o in operators]
    assert (
        cli("operators", "get", made["id"], "-o", "json").json("operators-get")["name"] == "auditor"
    )
    revoked = cli("operators", "revoke", made["id"], "-o", "json").json("operators-revoke")
    assert revoked["revoked_at"] is not None

    # the end of the lifecycles
    revoked_cred = cli("credentials", "revoke", aid, cred["client_id"], "-o", "json")
    assert revoked_cred.json("credentials-revoke")["revoked_at"] is not None
    assert (
        cli("versions", "deprecate", aid, vid, "-o", "json").json("agents-deprecate_version")[
            "state"
        ]
        == "deprecated"
    )
    assert cli("agents", "retire", aid, "-o", "json").json("agents-retire")["status"] == "retired"


def test_failures_are_one_line_with_the_code_and_exit_code(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli("agents", "get", "00000000-0000-0000-0000-000000000000").failed(3, "not_found")
    # An argument the server refuses as a path parameter is a usage error (2), as a bad flag is;
    # a body field it refuses stays an error (1), below.
    cli("agents", "get", "not-a-uuid").failed(2, "validation_failed")
    cli("domains", "get", "nowhere").failed(3, "not_found")
    bad = cli("agents", "create", "Bad Name!", "--domain", "payments", "--owner", "o")
    bad.failed(1, "validation_failed")
    assert "/body/name" in bad.err  # the per-field error, on the same line
    cli("domains", "create", "payments", "-o", "json").json("domains-create")
    cli("domains", "create", "payments").failed(1, "already_exists")
    cli("domains", "list", "--token", "acp_op_not-a-real-token-0123456789abcdefghij").failed(
        4, "unauthorized"
    )
    monkeypatch.delenv("AGENTCTL_TOKEN")
    cli("domains", "list").failed(2, "set AGENTCTL_TOKEN")
    dead = cli("domains", "list", "--token", ADMIN, "--url", f"http://127.0.0.1:{free_port()}")
    dead.failed(1, "cannot reach")
    monkeypatch.setenv("AGENTCTL_TOKEN", ADMIN)

    # denied: a role without the capability
    with httpx.Client(base_url=cli.url, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
        auditor = c.post("/v1/operators", json={"name": "auditor", "role": "auditor"}).json()
    cli("domains", "create", "ledger", "--token", auditor["token"]).failed(4, "forbidden")

    # usage
    assert cli("agents", "create").code == 2  # missing argument and options
    assert cli("agents", "frobnicate").code == 2
    assert cli("agents", "list", "--output", "yaml").code == 2
    assert (
        cli("agents", "create", "a", "--domain", "d", "--owner", "o", "--label", "nokey").code == 2
    )


def test_version_and_completion(cli: Any) -> None:

    version = cli("--version")
    assert (version.code, version.out.strip()) == (0, f"agentctl {__version__}")
    assert httpx.get(f"{cli.url}/healthz").json()["version"] == __version__
    shown = cli("--show-completion", "bash")
    assert shown.code == 0
    assert "agentctl" in shown.out

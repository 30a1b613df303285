"""`agentctl audit export` and `agentctl audit verify` against a real server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control_plane.audit.note import public_bytes, verifier_key
from tests.audit.support import record
from tests.conftest import ADMIN_TOKEN
from tests.fixtures.decisions import decider
from tests.fixtures.servers import agentctl, server_env, serving

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_export_then_verify_offline_and_by_url(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'agentctl.db'}"
    env = server_env(
        db,
        tmp_path,
        AGENTCTL_ADMIN_TOKEN=ADMIN_TOKEN,
        AGENTCTL_AUDIT_CHECKPOINT_SECONDS="0.2",
    )
    with serving(env, tmp_path / "server.log") as url:

        async def fill() -> tuple[str, str]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as c:
                me = await decider(c, ADMIN, scopes=["audit:write"])
                batch = [record() for _ in range(250)]
                r = await c.post(
                    "/v1/audit/records", json={"records": batch}, headers=me["headers"]
                )
                assert r.status_code == 200
                for _ in range(100):
                    r = await c.get("/v1/audit/logs/payments/checkpoint", headers=ADMIN)
                    if r.status_code == 200 and r.text.split("\n")[1] == "250":
                        break
                    await asyncio.sleep(0.1)
                key = (await c.get("/v1/audit/keys", headers=ADMIN)).json()["keys"][0]
                return r.text, key["verifier_key"]

        note, key = asyncio.run(fill())
        cli_env = {**env, "AGENTCTL_URL": url, "AGENTCTL_TOKEN": ADMIN_TOKEN}
        out = tmp_path / "payments.jsonl"
        done = agentctl("audit", "export", "--domain", "payments", "-o", str(out), env=cli_env)
        assert done.returncode == 0, done.stderr
        assert "exported 250 records of payments" in done.stderr
        assert len(out.read_text().splitlines()) == 250
        # '-' is stdout (a pipe), the same lines; no file named '-'.
        piped = agentctl("audit", "export", "--domain", "payments", "-o", "-", "-q", env=cli_env)
        assert piped.returncode == 0, piped.stderr
        assert piped.stdout == out.read_text()
        assert "to stdout" in piped.stderr
        (tmp_path / "cp").write_text(note)
        done = agentctl(
            "audit", "verify", str(out), "--checkpoint", str(tmp_path / "cp"), "--key", key,
            env=cli_env,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "250 records verified" in done.stdout
        done = agentctl("audit", "verify", "--url", url, "--output", "json", env=cli_env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["ok"] is True
        lines = out.read_text().splitlines()
        lines[100], lines[101] = lines[101], lines[100]
        out.write_text("\n".join(lines) + "\n")
        done = agentctl(
            "audit", "verify", str(out), "--checkpoint", str(tmp_path / "cp"), "--key", key,
            env=cli_env,
        )  # fmt: skip
        assert done.returncode == 1
        assert "first bad index 100" in done.stdout
        # Another log's key: the checkpoint, not a record, is at fault, and the line says so.
        other = verifier_key(
            key.split("+")[0].replace("/audit/payments", "/audit/ops"),
            public_bytes(Ed25519PrivateKey.generate().public_key()),
        )
        done = agentctl(
            "audit", "verify", str(out), "--checkpoint", str(tmp_path / "cp"), "--key", other,
            env=cli_env,
        )  # fmt: skip
        assert done.returncode == 1, done.stdout + done.stderr
        assert "BAD: " in done.stdout, done.stdout
        assert "checkpoint" in done.stdout
        assert "None" not in done.stdout
        assert "first bad index" not in done.stdout
        done = agentctl("audit", "export", "--domain", "payments", "-o", str(out), env=env)
        assert done.returncode != 0

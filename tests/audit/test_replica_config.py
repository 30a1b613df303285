"""Replicas sharing one database must agree on the key-encryption key and the issuer: the KEK
encrypts the checkpoint key (and derives the redaction key), the issuer names each log's origin,
which its checkpoints are signed for. A replica that disagrees is refused at start-up with one
line naming the mismatch and the setting to fix, instead of serving a log that answers
"ok": false on verify (as two servers with their own data dirs and default issuers did: each
took its own host:port as issuer, and its own data dir's KEK). Real servers, both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.audit.support import record
from tests.conftest import ADMIN_TOKEN
from tests.fixtures.decisions import decider
from tests.fixtures.servers import server_env, serving, start_server

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KEK = "k" * 43


def _env(db_url: str, data: Path, **extra: str) -> dict[str, str]:
    return server_env(
        db_url,
        data,
        AGENTCTL_ADMIN_TOKEN=ADMIN_TOKEN,
        AGENTCTL_AUDIT_CHECKPOINT_SECONDS="0.5",
        **extra,
    )


async def _signed_log(url: str) -> str:
    """Records in the payments log, sequenced and checkpointed; the checkpoint note."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        me = await decider(client, ADMIN, scopes=["audit:write"])
        r = await client.post(
            "/v1/audit/records",
            json={"records": [record() for _ in range(3)]},
            headers=me["headers"],
        )
        assert r.status_code == 200, r.text
        for _ in range(200):
            r = await client.get("/v1/audit/logs/payments/checkpoint", headers=ADMIN)
            if r.status_code == 200 and r.text.split("\n")[1] == "3":
                verified = (await client.get("/v1/audit/verify", headers=ADMIN)).json()
                assert verified["ok"], verified
                return r.text
            await asyncio.sleep(0.1)
    pytest.fail("the log was not checkpointed in time")


def _refused(env: dict[str, str], log: Path) -> str:
    """Start a server that must refuse to start; its output."""
    try:
        server = start_server(env, log)
    except AssertionError as refused:
        output = str(refused)
    else:
        server.kill()
        pytest.fail("the replica started")
    assert "Traceback" not in output
    return output


def test_a_replica_with_another_issuer_is_refused(db_url: str, tmp_path: Path) -> None:
    # Same KEK; no AGENTCTL_ISSUER: each server takes its own host and port as issuer.
    with serving(
        _env(db_url, tmp_path / "a", AGENTCTL_KEY_ENCRYPTION_KEY=KEK), tmp_path / "a.log"
    ) as a:
        note = asyncio.run(_signed_log(a))
        origin = note.split("\n")[0]
        output = _refused(
            _env(db_url, tmp_path / "b", AGENTCTL_KEY_ENCRYPTION_KEY=KEK), tmp_path / "b.log"
        )
        assert "AGENTCTL_ISSUER" in output
        assert repr(origin) in output
        # The first server still serves a log that verifies.
        r = httpx.get(f"{a}/v1/audit/verify", headers=ADMIN, timeout=30)
        assert r.json()["ok"] is True, r.text


def test_a_replica_with_another_kek_is_refused(db_url: str, tmp_path: Path) -> None:
    # Same issuer; no AGENTCTL_KEY_ENCRYPTION_KEY: each data dir makes its own KEK.
    issuer = {"AGENTCTL_ISSUER": "http://agentctl.test"}
    with serving(_env(db_url, tmp_path / "a", **issuer), tmp_path / "a.log") as a:
        asyncio.run(_signed_log(a))
        output = _refused(_env(db_url, tmp_path / "b", **issuer), tmp_path / "b.log")
        assert "AGENTCTL_KEY_ENCRYPTION_KEY" in output
        assert "encrypted under another key-encryption key" in output


def test_replicas_that_agree_share_one_log(db_url: str, tmp_path: Path) -> None:
    same = {"AGENTCTL_ISSUER": "http://agentctl.test", "AGENTCTL_KEY_ENCRYPTION_KEY": KEK}
    with serving(_env(db_url, tmp_path / "a", **same), tmp_path / "a.log") as a:
        asyncio.run(_signed_log(a))
        with serving(_env(db_url, tmp_path / "b", **same), tmp_path / "b.log") as b:
            for url in (a, b):
                r = httpx.get(f"{url}/v1/audit/verify", headers=ADMIN, timeout=30)
                assert r.json()["ok"] is True, r.text
                keys = httpx.get(f"{url}/v1/audit/keys", headers=ADMIN, timeout=30).json()
                assert keys["keys"][0]["name"] == "agentctl.test/audit/payments"

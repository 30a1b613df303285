"""Backup and restore as deploy/README.md documents it: pg_dump of a live database, pg_restore
into a fresh one, the service started on it verifies its audit log and serves decisions."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.audit.support import record, send, writer
from tests.conftest import ADMIN_TOKEN, _pg_admin, _pg_drop, _pg_dsn
from tests.fixtures.decisions import REFUND
from tests.fixtures.servers import server_env
from tests.ops.servers import start, stop

pytestmark = pytest.mark.postgres

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
COMMON = {
    "AGENTCTL_ADMIN_TOKEN": ADMIN_TOKEN,
    # The key-encryption key is not in the database: it is restored from its own store.
    "AGENTCTL_KEY_ENCRYPTION_KEY": "r" * 48,
    "AGENTCTL_ISSUER": "http://control-plane.test",
    "AGENTCTL_AUDIT_CHECKPOINT_SECONDS": "1",
}


async def settled(client: httpx.AsyncClient, size: int) -> dict[str, Any]:
    """The server's verification once the log has ``size`` leaves, all checkpointed."""
    deadline = time.monotonic() + 60
    while True:
        r = await client.get("/v1/audit/verify", headers=ADMIN)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        logs = body["logs"]
        if logs and logs[0]["size"] == size and logs[0]["checkpoint_size"] == size:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.3)


async def test_a_restored_database_verifies_its_audit_log_and_serves_decisions(
    pg_url: str, tmp_path: Path
) -> None:
    server = start(server_env(pg_url, tmp_path / "live", **COMMON), tmp_path / "live.log")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            me = await writer(client, ADMIN)
            for _ in range(5):
                assert (
                    await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
                ).status_code == 200
            assert await send(client, me["headers"], [record(), record()]) == ["stored"] * 2
            before = await settled(client, 7)
            note = (await client.get("/v1/audit/logs/payments/checkpoint", headers=ADMIN)).text
        # The documented backup: a custom-format dump of the live database.
        dump = tmp_path / "agentctl.dump"
        subprocess.run(
            ["pg_dump", "--format=custom", "--no-owner", f"--file={dump}", _pg_dsn(pg_url)],
            check=True,
            timeout=300,
        )
    finally:
        stop(server)

    restored = f"acp_restored_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f"CREATE DATABASE {restored}")
    try:
        restored_url = pg_url.rsplit("/", 1)[0] + f"/{restored}"
        subprocess.run(
            [
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                f"--dbname={_pg_dsn(restored_url)}",
                str(dump),
            ],
            check=True,
            timeout=300,
        )
        again = start(server_env(restored_url, tmp_path / "restored", **COMMON), tmp_path / "r.log")
        try:
            async with httpx.AsyncClient(base_url=again.url, timeout=60) as client:
                check = await settled(client, 7)
                assert check["ok"] is True
                assert check["logs"] == before["logs"]
                # The same signed checkpoint: the restored log is the one that was backed up.
                restored_note = await client.get(
                    "/v1/audit/logs/payments/checkpoint", headers=ADMIN
                )
                assert restored_note.text == note
                # The agent's token from before the backup still works (keys restored) ...
                r = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
                assert r.status_code == 200, r.text
                assert r.json()["effect"] == "allow"
                # ... and the log grows on from where it was, and still verifies.
                grown = await settled(client, 8)
                assert grown["ok"] is True
        finally:
            stop(again)
        assert not again.errors(), again.errors()
    finally:
        await _pg_drop(restored)

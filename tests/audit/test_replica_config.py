"""Two servers with their own data dirs sharing one database: each took its own host and port as
issuer (which named each log's origin, so each signed checkpoints the other could not verify:
"ok": false) and its own data dir's KEK. Now a log keeps the origin of its first checkpoint
whatever a replica's issuer, and a replica whose KEK is not the one the database's keys were
encrypted under is refused at start-up with one line naming the mismatch and the setting to
fix. Real servers, both databases."""

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


async def _more_records(url: str, n: int, *, name: str, new_domain: bool = False) -> None:
    """``n`` records in the payments log from a new agent registered through ``url``."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        me = await decider(
            client, ADMIN, name=name, scopes=["audit:write"], create_the_domain=new_domain
        )
        r = await client.post(
            "/v1/audit/records",
            json={"records": [record() for _ in range(n)]},
            headers=me["headers"],
        )
        assert r.status_code == 200, r.text


async def _checkpoint(url: str, size: int) -> str:
    """The payments log's checkpoint once it covers ``size`` records."""
    async with httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=30) as client:
        for _ in range(300):
            r = await client.get("/v1/audit/logs/payments/checkpoint")
            if r.status_code == 200 and int(r.text.split("\n")[1]) >= size:
                return r.text
            await asyncio.sleep(0.1)
    pytest.fail("the log was not checkpointed in time")


async def _signed_log(url: str) -> str:
    """Three records in the payments log, sequenced and checkpointed; the checkpoint note."""
    await _more_records(url, 3, name="bot-a", new_domain=True)
    note = await _checkpoint(url, 3)
    async with httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=30) as client:
        verified = (await client.get("/v1/audit/verify")).json()
    assert verified["ok"], verified
    return note


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


def test_replicas_with_other_issuers_share_one_log_that_verifies(
    db_url: str, tmp_path: Path
) -> None:
    # Same KEK; no AGENTCTL_ISSUER: each server takes its own host and port as issuer.
    kek = {"AGENTCTL_KEY_ENCRYPTION_KEY": KEK}
    with serving(_env(db_url, tmp_path / "a", **kek), tmp_path / "a.log") as a:
        origin = asyncio.run(_signed_log(a)).split("\n")[0]
        assert origin == a.removeprefix("http://") + "/audit/payments"
        with serving(_env(db_url, tmp_path / "b", **kek), tmp_path / "b.log") as b:
            asyncio.run(_more_records(b, 3, name="bot-b"))
            for url in (a, b):
                note = asyncio.run(_checkpoint(url, 6))
                assert note.split("\n")[0] == origin
                r = httpx.get(f"{url}/v1/audit/verify", headers=ADMIN, timeout=30)
                assert r.json()["ok"] is True, r.text
                keys = httpx.get(f"{url}/v1/audit/keys", headers=ADMIN, timeout=30).json()
                assert [k["name"] for k in keys["keys"]] == [origin]


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

"""Tampering with the stored log is found, at the right index, by GET /v1/audit/verify and by
the offline `agentctl audit verify` on an export. The tests drop the append-only triggers
first, as an attacker with DDL rights would."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection

from control_plane.audit.log import leaf_canonical, split_leaf
from control_plane.audit.merkle import leaf_hash
from control_plane.audit.note import Checkpoint, sign_note
from control_plane.cli import main as agentctl
from control_plane.kit.db import create_engine
from tests.audit.support import record, send, settle, writer

TABLES = ("audit_records", "audit_leaves", "audit_checkpoints")
ORIGIN = "testserver/audit/payments"
Tamper = Callable[[AsyncConnection], Coroutine[Any, Any, None]]


async def _run(db_url: str, action: Tamper) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await action(conn)
    finally:
        await engine.dispose()


async def drop_triggers(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        for table in TABLES:
            await conn.exec_driver_sql(f"DROP TRIGGER {table}_append_only ON {table}")
            await conn.exec_driver_sql(f"DROP TRIGGER {table}_no_truncate ON {table}")
    else:
        for table in TABLES:
            await conn.exec_driver_sql(f"DROP TRIGGER {table}_no_update")
            await conn.exec_driver_sql(f"DROP TRIGGER {table}_no_delete")


async def _leaf(conn: AsyncConnection, seq: int) -> tuple[uuid.UUID, bytes]:
    row = (
        await conn.execute(
            sa.text("SELECT record_id, canonical FROM audit_leaves WHERE seq = :s"), {"s": seq}
        )
    ).one()
    rid = row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(str(row[0]))
    return rid, bytes(row[1])


def _rid(conn: AsyncConnection, rid: uuid.UUID) -> Any:
    # SQLite stores UUIDs as 32 hex characters; PostgreSQL as uuid.
    return rid if conn.dialect.name == "postgresql" else rid.hex


async def change_a_field(conn: AsyncConnection) -> None:
    rid, data = await _leaf(conn, 4)
    forged = data.replace(b"customer asked", b"customer begged")
    assert forged != data
    await conn.execute(
        sa.text("UPDATE audit_leaves SET canonical = :c WHERE seq = 4"), {"c": forged}
    )
    parts = split_leaf(forged)
    assert parts is not None
    await conn.execute(
        sa.text("UPDATE audit_records SET record = :r WHERE id = :i"),
        {"r": parts[1].decode(), "i": _rid(conn, rid)},
    )


async def change_a_field_and_its_leaf_hash(conn: AsyncConnection) -> None:
    """What a careful forger does: the leaf's bytes and hash agree again, only the root tells.
    One checkpoint covers all ten leaves, so no index can be named, and none is."""
    rid, data = await _leaf(conn, 4)
    forged = data.replace(b"customer asked", b"customer begged")
    await conn.execute(
        sa.text("UPDATE audit_leaves SET canonical = :c, leaf_hash = :h WHERE seq = 4"),
        {"c": forged, "h": leaf_hash(forged)},
    )
    parts = split_leaf(forged)
    assert parts is not None
    await conn.execute(
        sa.text("UPDATE audit_records SET record = :r WHERE id = :i"),
        {"r": parts[1].decode(), "i": _rid(conn, rid)},
    )


async def delete_a_record(conn: AsyncConnection) -> None:
    rid, _ = await _leaf(conn, 4)
    await conn.execute(sa.text("DELETE FROM audit_leaves WHERE seq = 4"))
    await conn.execute(sa.text("DELETE FROM audit_records WHERE id = :i"), {"i": _rid(conn, rid)})


async def insert_a_record(conn: AsyncConnection) -> None:
    # Make room at index 4 (two steps: the primary key is checked per row), then forge a leaf
    # there whose own bytes and hash are perfectly consistent.
    await conn.execute(sa.text("UPDATE audit_leaves SET seq = seq + 1000 WHERE seq >= 4"))
    await conn.execute(sa.text("UPDATE audit_leaves SET seq = seq - 999 WHERE seq >= 1000"))
    _, template = await _leaf(conn, 3)
    parts = split_leaf(template)
    assert parts is not None
    forged_record = json.loads(parts[1])
    forged_id = uuid.uuid4()
    forged_record["id"] = str(forged_id)
    forged_record["rationale"] = "forged"
    body = json.dumps(forged_record, sort_keys=True, separators=(",", ":")).encode()
    data = leaf_canonical(4, body)
    await conn.execute(
        sa.text(
            "INSERT INTO audit_leaves (domain, seq, record_id, canonical, leaf_hash, created_at) "
            "VALUES ('payments', 4, :i, :c, :h, CURRENT_TIMESTAMP)"
        ),
        {"i": _rid(conn, forged_id), "c": data, "h": leaf_hash(data)},
    )


async def swap_two(conn: AsyncConnection) -> None:
    await conn.execute(sa.text("UPDATE audit_leaves SET seq = -1 WHERE seq = 2"))
    await conn.execute(sa.text("UPDATE audit_leaves SET seq = 2 WHERE seq = 6"))
    await conn.execute(sa.text("UPDATE audit_leaves SET seq = 6 WHERE seq = -1"))


async def truncate_the_tail(conn: AsyncConnection) -> None:
    await conn.execute(sa.text("DELETE FROM audit_leaves WHERE seq >= 7"))


async def replace_the_checkpoint(conn: AsyncConnection) -> None:
    forged = sign_note(
        Checkpoint(ORIGIN, 10, bytes(32)).text(), ORIGIN, Ed25519PrivateKey.generate()
    )
    await conn.execute(sa.text("UPDATE audit_checkpoints SET note = :n"), {"n": forged})


CASES = [
    (change_a_field, 4),
    (change_a_field_and_its_leaf_hash, None),
    (delete_a_record, 4),
    (insert_a_record, 4),
    (swap_two, 2),
    (truncate_the_tail, 7),
    (replace_the_checkpoint, None),
]


async def test_the_log_tables_refuse_changes(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], db_url: str
) -> None:
    me = await writer(client, admin)
    await send(client, me["headers"], [record()])
    await settle(app)
    statements = [f"UPDATE {t} SET domain = 'x'" for t in TABLES]  # noqa: S608
    statements += [f"DELETE FROM {t}" for t in TABLES]  # noqa: S608
    if db_url.startswith("postgresql"):
        statements += [f"TRUNCATE {t}" for t in TABLES]
    for statement in statements:

        async def attempt(conn: AsyncConnection, statement: str = statement) -> None:
            await conn.exec_driver_sql(statement)

        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            await _run(db_url, attempt)


@pytest.mark.parametrize(("tamper", "bad_index"), CASES, ids=[c[0].__name__ for c in CASES])
async def test_tampering_is_detected_at_the_right_index(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tamper: Tamper,
    bad_index: int | None,
) -> None:
    me = await writer(client, admin)
    await send(client, me["headers"], [record() for _ in range(10)])
    await settle(app)
    assert (await client.get("/v1/audit/verify", headers=admin)).json()["ok"] is True
    key = (await client.get("/v1/audit/keys", headers=admin)).json()["keys"][0]["verifier_key"]

    await _run(db_url, drop_triggers)
    await _run(db_url, tamper)

    result = (await client.get("/v1/audit/verify", headers=admin)).json()
    assert result["ok"] is False
    [log] = result["logs"]
    assert log["first_bad_index"] == bad_index, log
    assert log["reason"]
    if tamper is change_a_field_and_its_leaf_hash:  # where it can be, and no false index
        assert "from index 0 to 9" in log["reason"], log

    note = (await client.get("/v1/audit/logs/payments/checkpoint", headers=admin)).text
    export = await client.get("/v1/audit/export", params={"domain": "payments"}, headers=admin)
    (tmp_path / "log.jsonl").write_text(export.text)
    (tmp_path / "checkpoint").write_text(note)
    capsys.readouterr()
    code = agentctl(
        [
            "audit",
            "verify",
            str(tmp_path / "log.jsonl"),
            "--checkpoint",
            str(tmp_path / "checkpoint"),
            "--key",
            key,
            "--output",
            "json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["ok"] is False
    assert out["logs"][0]["first_bad_index"] == bad_index, out
    if tamper is change_a_field_and_its_leaf_hash:
        assert "from index 0 to 9" in out["logs"][0]["reason"], out


async def test_changed_query_columns_are_found_at_their_index(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], db_url: str
) -> None:
    """The records table repeats some fields of each record as columns that the queries filter
    on (status, action, time, agent, ...): changed there, a record would be missing from the
    answers it belongs in while its leaf still verifies. GET /v1/audit/verify compares them."""
    me = await writer(client, admin)
    await send(client, me["headers"], [record() for _ in range(8)])
    await settle(app)
    assert (await client.get("/v1/audit/verify", headers=admin)).json()["ok"] is True
    await _run(db_url, drop_triggers)
    changed: list[tuple[uuid.UUID, Any]] = []  # (record id, the column's value before)
    for column, value in (
        ("status", "'failed'"),
        ("action", "'payments.other'"),
        ("timestamp", "'2020-01-01 00:00:00'"),
        ("agent_id", "id"),  # another uuid
    ):

        async def change(conn: AsyncConnection, column: str = column, value: str = value) -> None:
            rid, _ = await _leaf(conn, 5)
            original = (
                await conn.execute(
                    sa.text(f"SELECT {column} FROM audit_records WHERE id = :i"),  # noqa: S608
                    {"i": _rid(conn, rid)},
                )
            ).scalar_one()
            await conn.execute(
                sa.text(f"UPDATE audit_records SET {column} = {value} WHERE id = :i"),  # noqa: S608
                {"i": _rid(conn, rid)},
            )
            changed.append((rid, original))

        changed.clear()
        await _run(db_url, change)
        result = (await client.get("/v1/audit/verify", headers=admin)).json()
        [log] = result["logs"]
        assert (result["ok"], log["first_bad_index"]) == (False, 5), (column, log)
        assert column in log["reason"], log

        async def restore(conn: AsyncConnection, column: str = column) -> None:
            rid, original = changed[0]
            await conn.execute(
                sa.text(f"UPDATE audit_records SET {column} = :v WHERE id = :i"),  # noqa: S608
                {"v": original, "i": _rid(conn, rid)},
            )

        await _run(db_url, restore)
        assert (await client.get("/v1/audit/verify", headers=admin)).json()["ok"] is True

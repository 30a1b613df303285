"""The decision hot path: on SQLite a decision evaluates before it waits for the writer turn, and
is never recorded on state that changed while it waited."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from control_plane.state import app_state
from tests.fixtures.decisions import REFUND, decider


async def _decisions(client: httpx.AsyncClient, admin: dict[str, str]) -> int:
    return len((await client.get("/v1/decisions", headers=admin)).json()["data"])


async def _waiting_decision(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
) -> tuple[asyncio.Task[httpx.Response], asyncio.Lock | None]:
    """A decision started while the test holds the writer turn (SQLite); on PostgreSQL, where
    there is none, the decision simply runs."""
    turn = app_state(app).database.writer_turn
    if turn is not None:
        await turn.acquire()
    task = asyncio.create_task(client.post("/v1/decisions", json=REFUND, headers=headers))
    await asyncio.sleep(0.3)  # it authenticates, reads and evaluates, then waits for the turn
    return task, turn


async def test_evaluation_does_not_wait_for_the_writer_turn(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin)
    task, turn = await _waiting_decision(app, client, me["headers"])
    if turn is not None:
        # Reads need no turn: the listing answers while the decision waits to write.
        assert await _decisions(client, admin) == 0
        assert not task.done()
        turn.release()
    r = await task
    assert r.status_code == 200, r.text
    assert await _decisions(client, admin) == 1


async def test_suspension_committed_while_a_decision_waits_is_not_decided_over(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin)
    agent_id = me["agent"]["id"]
    task, turn = await _waiting_decision(app, client, me["headers"])
    if turn is not None:
        # Another process suspends the agent (it writes without this process's turn).
        engine = app_state(app).database.engine
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE agents SET status = 'suspended', revision = revision + 1 WHERE id = :i"
                ),
                {"i": agent_id.replace("-", "")},
            )
        turn.release()
        r = await task
        # Run again from the start holding the turn: the token is refused, nothing recorded.
        assert r.status_code == 401, r.text
        assert "not active" in r.json()["detail"]
        assert await _decisions(client, admin) == 0
    else:
        assert (await task).status_code == 200
        r = await client.post(f"/v1/agents/{agent_id}/suspend", headers=admin)
        assert r.status_code == 200, r.text
        refused = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
        assert refused.status_code == 401, refused.text
        assert await _decisions(client, admin) == 1


@pytest.mark.only_db("sqlite")  # PostgreSQL has no writer turn: one transaction throughout
@pytest.mark.parametrize("step", ["credential", "version", "domain"])
async def test_revocation_while_waiting_reruns_the_decision(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], step: str
) -> None:
    """A credential revoked, the active version retired, or the domain's kill switch thrown,
    while the decision waited: the request runs again on the new state instead of recording
    the old one."""
    turn = app_state(app).database.writer_turn
    assert turn is not None
    me = await decider(client, admin)
    agent_id = me["agent"]["id"].replace("-", "")
    task, _ = await _waiting_decision(app, client, me["headers"])
    engine = app_state(app).database.engine
    async with engine.begin() as conn:
        if step == "credential":
            await conn.execute(
                text("UPDATE credentials SET revoked_at = CURRENT_TIMESTAMP WHERE agent_id = :i"),
                {"i": agent_id},
            )
        elif step == "version":
            await conn.execute(
                text("UPDATE agent_versions SET state = 'deprecated' WHERE agent_id = :i"),
                {"i": agent_id},
            )
        else:  # the domain alone (the kill switch also suspends each agent)
            await conn.execute(
                text("UPDATE domains SET suspended_at = CURRENT_TIMESTAMP WHERE name = :d"),
                {"d": me["agent"]["domain"]},
            )
    turn.release()
    r = await task
    if step in ("credential", "domain"):
        assert r.status_code == 401, r.text
        assert await _decisions(client, admin) == 0
    else:
        assert r.status_code == 200, r.text
        assert r.json()["effect"] == "deny"
        records = (await client.get("/v1/decisions", headers=admin)).json()["data"]
        assert [d["version"] for d in records] == [None]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
async def test_a_number_that_is_not_finite_is_a_422(
    client: httpx.AsyncClient, admin: dict[str, str], number: str
) -> None:
    me = await decider(client, admin)
    body = '{"action": "payments.refund", "resource": {"type": "order", "id": "o-1", '
    body += f'"amount": {number}}}}}'
    headers = {**me["headers"], "Content-Type": "application/json"}
    r = await client.post("/v1/decisions", content=body, headers=headers)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "numbers must be finite" in r.json()["detail"], r.text
    assert await _decisions(client, admin) == 0


_REFUSE_AUDIT = {
    "sqlite": [
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_records "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused'; END $$",
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_records "
        "FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
    ],
}
_ALLOW_AUDIT = {
    "sqlite": ["DROP TRIGGER refuse_audit"],
    "postgresql": ["DROP TRIGGER refuse_audit ON audit_records"],
}


async def _run(app: FastAPI, statements: dict[str, list[str]]) -> None:
    engine = app_state(app).database.engine
    async with engine.begin() as conn:
        for sql in statements[engine.dialect.name]:
            await conn.execute(text(sql))


async def test_a_decision_whose_audit_record_cannot_be_written_is_neither_answered_nor_kept(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """The decision row and its audit record are written together (one statement on
    PostgreSQL): when the audit record is refused, the agent gets a 503 and no decision stays
    on record; once it can be written again, the decision is answered and recorded."""
    me = await decider(client, admin)
    await _run(app, _REFUSE_AUDIT)
    r = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "nothing was decided" in r.json()["detail"]
    assert await _decisions(client, admin) == 0
    await _run(app, _ALLOW_AUDIT)
    r = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
    assert r.status_code == 200, r.text
    assert await _decisions(client, admin) == 1

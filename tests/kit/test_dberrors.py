"""Database availability failures answer 503 ``database_unavailable`` with ``Retry-After``.

The failures are real ones from the real databases: PostgreSQL raising an error with the
SQLSTATE under test, a statement running past ``statement_timeout`` (``pg_sleep``), more
concurrent slow requests than the pool holds, a SQLite write lock held by another connection
past the busy timeout. Restarts and crashes of PostgreSQL itself are in tests/chaos/.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from sqlalchemy import text
from sqlalchemy.engine import make_url

from control_plane.app import create_app
from control_plane.config import Settings
from control_plane.kit.errors import Conflict
from control_plane.kit.routing import Session, StaleReads, TransactionalRoute, after_commit
from control_plane.state import app_state
from tests.conftest import ADMIN_TOKEN, _bootstrap
from tests.fixtures.decisions import REFUND, decider

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _chaos_router() -> APIRouter:
    """Routes that inject one database failure each; the app's own code handles the rest."""
    router = APIRouter(prefix="/chaos", route_class=TransactionalRoute)

    @router.post("/raise/{sqlstate}")
    async def raise_sqlstate(sqlstate: str, session: Session, request: Request) -> dict[str, int]:
        calls = request.app.state.chaos_calls
        calls[sqlstate] = calls.get(sqlstate, 0) + 1
        after_commit(session, lambda: request.app.state.committed.append(sqlstate))
        fail_times = int(request.query_params.get("times", "1000"))
        await session.exec(text("CREATE TABLE IF NOT EXISTS chaos_writes (n int)"))  # type: ignore[call-overload]
        await session.exec(text("INSERT INTO chaos_writes VALUES (1)"))  # type: ignore[call-overload]
        if calls[sqlstate] <= fail_times:
            await session.exec(  # type: ignore[call-overload]
                text(f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; END $$")
            )
        return {"attempts": calls[sqlstate]}

    @router.post("/answer/{status}")
    async def answer(status: int, session: Session, request: Request) -> dict[str, int]:
        after_commit(session, lambda: request.app.state.committed.append(status))
        await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        if status == 409:
            raise Conflict("refused")
        return {"status": status}

    @router.post("/stale")
    async def stale(session: Session, request: Request) -> dict[str, int]:
        # What it read changes every time before it can write (kit.routing.StaleReads).
        request.app.state.chaos_calls["stale"] = request.app.state.chaos_calls.get("stale", 0) + 1
        after_commit(session, lambda: request.app.state.committed.append("stale"))
        await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        raise StaleReads

    @router.get("/sleep")
    async def sleep(session: Session, seconds: float) -> dict[str, bool]:
        await session.exec(text("SELECT pg_sleep(:s)").bindparams(s=seconds))  # type: ignore[call-overload]
        return {"slept": True}

    return router


def _settings(db_url: str, tmp_path: Path, **extra: Any) -> Settings:
    extra.setdefault("database_connect_timeout_seconds", 60)  # a loaded, shared machine
    return Settings(
        database_url=db_url,
        data_dir=tmp_path / "data",
        environment="test",
        issuer="http://testserver",
        **extra,
    )


async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    await _bootstrap(settings)
    app: FastAPI = create_app(settings)
    app.state.chaos_calls = {}
    app.state.committed = []
    app.include_router(_chaos_router())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


def _assert_503(r: httpx.Response, cause: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) >= 1
    body = r.json()
    assert body["code"] == "database_unavailable"
    assert body["type"] == "urn:agentctl:problem:database_unavailable"
    assert body["cause"] == cause


# The database tests need one kind each: parametrize ``db_url`` (conftest) with just that kind.
POSTGRES_ONLY = pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@POSTGRES_ONLY
@pytest.mark.parametrize(
    ("sqlstate", "cause"),
    [
        ("57P01", "shutting_down"),  # terminating connection due to administrator command
        ("57P03", "cannot_connect_now"),  # the database system is starting up / shutting down
        ("08006", "unreachable"),  # connection failure
        ("53300", "too_many_connections"),
        ("57014", "statement_timeout"),
        ("55P03", "lock_timeout"),
    ],
)
async def test_availability_sqlstates_answer_503(
    db_url: str, tmp_path: Path, sqlstate: str, cause: str, capfd: pytest.CaptureFixture[str]
) -> None:
    async for client in _client(_settings(db_url, tmp_path)):
        r = await client.post(f"/chaos/raise/{sqlstate}")
        _assert_503(r, cause)
        # Not retried in the request: only serialization failures and deadlocks are.
        r = await client.post(f"/chaos/raise/{sqlstate}")
        assert r.status_code == 503
    out = capfd.readouterr()
    logged = out.out + out.err
    assert logged.count("database_unavailable") == 2, logged
    assert "Traceback" not in logged


@POSTGRES_ONLY
@pytest.mark.parametrize(
    ("sqlstate", "cause"), [("40001", "serialization_failure"), ("40P01", "deadlock")]
)
async def test_serialization_failures_are_retried_in_the_request(
    db_url: str, tmp_path: Path, sqlstate: str, cause: str
) -> None:
    async for client in _client(_settings(db_url, tmp_path, database_retry_attempts=3)):
        # Fails twice, succeeds on the third attempt: one answer, one write.
        r = await client.post(f"/chaos/raise/{sqlstate}", params={"times": 2})
        assert r.status_code == 200, r.text
        assert r.json() == {"attempts": 3}
        # Fails every time: 503 after exactly three attempts, nothing written.
        r = await client.post(f"/chaos/raise/{sqlstate}")
        _assert_503(r, cause)
        assert client._transport.app.state.chaos_calls[sqlstate] == 6  # type: ignore[attr-defined]
        # What runs after commit ran once, for the one attempt that committed.
        assert client._transport.app.state.committed == [sqlstate]  # type: ignore[attr-defined]
    conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
    try:
        assert await conn.fetchval("SELECT count(*) FROM chaos_writes") == 1
    finally:
        await conn.close()


@POSTGRES_ONLY
@pytest.mark.allow_500
async def test_other_database_errors_stay_500(db_url: str, tmp_path: Path) -> None:
    """A division by zero is a bug, not an outage: retrying would not help."""
    async for client in _client(_settings(db_url, tmp_path)):
        r = await client.post("/chaos/raise/22012", headers={"X-Request-ID": "req-500-abc"})
        assert r.status_code == 500
        assert r.json()["code"] == "internal_error"
        # The answer names the request, as every other answer does, so the log line is found.
        assert r.json()["request_id"] == "req-500-abc"
        assert r.headers["x-request-id"] == "req-500-abc"


@POSTGRES_ONLY
async def test_slow_statement_answers_503_within_the_statement_timeout(
    db_url: str, tmp_path: Path
) -> None:
    settings = _settings(db_url, tmp_path, database_statement_timeout_seconds=1)
    async for client in _client(settings):
        started = time.monotonic()
        r = await client.get("/chaos/sleep", params={"seconds": 30})
        elapsed = time.monotonic() - started
        _assert_503(r, "statement_timeout")
        assert elapsed < 10, elapsed  # bound 1 s; generous for a loaded machine
        assert (await client.get("/chaos/sleep", params={"seconds": 0})).status_code == 200


async def _wait_for_sleepers(db_url: str, count: int) -> None:
    conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sleeping = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND query LIKE 'SELECT pg_sleep%' AND pid <> pg_backend_pid()"
            )
            if sleeping >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"fewer than {count} requests sleeping after 30 s")
    finally:
        await conn.close()


@POSTGRES_ONLY
async def test_pool_exhaustion_answers_503_within_the_pool_timeout(
    db_url: str, tmp_path: Path
) -> None:
    # pool_size 1 allows 3 connections (pool plus overflow); 3 slow requests hold them all.
    settings = _settings(db_url, tmp_path, database_pool_size=1, database_pool_timeout_seconds=1)
    async for client in _client(settings):
        slow = [
            asyncio.create_task(client.get("/chaos/sleep", params={"seconds": 4})) for _ in range(3)
        ]
        # Wait until the three sleep in PostgreSQL, each on its own pooled connection. (A fixed
        # sleep raced them on a loaded machine; the pool's own count also counts a background
        # worker's brief checkout, which it then gave to the request under test.)
        await _wait_for_sleepers(db_url, 3)
        started = time.monotonic()
        r = await client.get("/v1/agents", headers=ADMIN)
        elapsed = time.monotonic() - started
        _assert_503(r, "pool_timeout")
        assert elapsed < 8, elapsed  # bound 1 s; generous for a loaded machine
        assert [t.status_code for t in await asyncio.gather(*slow)] == [200, 200, 200]
        assert (await client.get("/v1/agents", headers=ADMIN)).status_code == 200


@SQLITE_ONLY
async def test_sqlite_busy_past_its_timeout_answers_503(db_url: str, tmp_path: Path) -> None:
    settings = _settings(db_url, tmp_path, database_statement_timeout_seconds=0.5)
    async for client in _client(settings):
        # Another process's writer holds the database's write lock.
        holder = sqlite3.connect(db_url.split("///", 1)[1], isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            r = await client.post("/v1/domains", json={"name": "payments"}, headers=ADMIN)
            _assert_503(r, "busy")
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        r = await client.post("/v1/domains", json={"name": "payments"}, headers=ADMIN)
        assert r.status_code == 201, r.text


@SQLITE_ONLY
async def test_sqlite_writer_queue_is_bounded(db_url: str, tmp_path: Path) -> None:
    settings = _settings(db_url, tmp_path, database_pool_timeout_seconds=0.3)
    async for client in _client(settings):
        app = client._transport.app  # type: ignore[attr-defined]
        lock = app_state(app).database.writer_turn
        assert lock is not None
        async with lock:  # a long write of this process holds the writers' turn
            r = await client.post("/v1/domains", json={"name": "payments"}, headers=ADMIN)
        _assert_503(r, "busy")
        r = await client.post("/v1/domains", json={"name": "payments"}, headers=ADMIN)
        assert r.status_code == 201, r.text


async def test_key_ring_refresh_never_waits_on_the_request_pool(
    db_url: str, tmp_path: Path
) -> None:
    # Every request verifies its token on the key ring, which is reloaded every
    # key_refresh_seconds. A reload through the request pool, made by a request already holding
    # a pooled connection while the others held the rest, waited for a connection none of them
    # gave back: every request answered 503 pool_timeout after the pool timeout.
    settings = _settings(db_url, tmp_path, key_refresh_seconds=0.05, database_pool_size=1)
    async for client in _client(settings):
        who = await decider(client, ADMIN)
        answers = await asyncio.gather(
            *(client.post("/v1/decisions", json=REFUND, headers=who["headers"]) for _ in range(60))
        )
        assert [r.status_code for r in answers] == [200] * 60, [
            r.text for r in answers if r.status_code != 200
        ][:1]


async def test_after_commit_runs_only_for_what_was_committed(db_url: str, tmp_path: Path) -> None:
    # Metrics count decisions and audit records this way: a refused request counts nothing.
    async for client in _client(_settings(db_url, tmp_path)):
        assert (await client.post("/chaos/answer/200")).status_code == 200
        assert (await client.post("/chaos/answer/409")).status_code == 409
        assert client._transport.app.state.committed == [200]  # type: ignore[attr-defined]


async def test_a_request_stale_on_every_attempt_answers_503(db_url: str, tmp_path: Path) -> None:
    settings = _settings(db_url, tmp_path)
    async for client in _client(settings):
        r = await client.post("/chaos/stale")
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "service_unavailable"
        assert r.headers["retry-after"] == "1"
        app = client._transport.app  # type: ignore[attr-defined]
        assert app.state.chaos_calls["stale"] == settings.database_retry_attempts
        assert app.state.committed == []


@POSTGRES_ONLY
async def test_a_database_refusing_connections_answers_503_not_500(
    db_url: str, tmp_path: Path
) -> None:
    """ALLOW_CONNECTIONS false: PostgreSQL refuses at connect with 55000, which no statement
    raised; /readyz said unavailable while requests answered 500."""
    name = make_url(db_url).database
    admin = await asyncpg.connect(db_url.replace("+asyncpg", "").rsplit("/", 1)[0] + "/postgres")
    try:
        async for client in _client(_settings(db_url, tmp_path)):
            assert (await client.get("/v1/agents", headers=ADMIN)).status_code == 200
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
            r = await client.get("/v1/agents", headers=ADMIN)
            _assert_503(r, "cannot_connect_now")
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            assert (await client.get("/v1/agents", headers=ADMIN)).status_code == 200
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()

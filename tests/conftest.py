"""Test harness shared by every test package.

Database tests take the ``db_url`` fixture, which is parametrised over SQLite and PostgreSQL and
gives each test a fresh, migrated database: SQLite copies a migrated template file, PostgreSQL
clones a migrated template database (``CREATE DATABASE ... TEMPLATE``, made one test ahead:
``PgClones``). Nothing is shared between tests, and nothing needs cleaning up by deleting rows.

PostgreSQL comes from ``AGENTCTL_TEST_DATABASE_URL``. Without it the PostgreSQL half is skipped
with a loud summary line, except under ``CI=true``, where a missing database fails the run.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import make_url

from control_plane.app import create_app
from control_plane.config import Settings
from control_plane.kit.db import DatabaseTimeouts, create_engine, create_sessionmaker
from control_plane.migrate import upgrade
from control_plane.operators.service import ensure_bootstrap_admin
from control_plane.policy.service import ensure_default_bundle

#: Fixtures every package shares live in tests/fixtures/; the pytest ones are registered here.
pytest_plugins = ["tests.fixtures.keys"]

PG_URL = os.environ.get("AGENTCTL_TEST_DATABASE_URL")
IN_CI = os.environ.get("CI", "").lower() == "true"
ADMIN_TOKEN = "acp_op_test-bootstrap-admin-token-0123456789abcdef"

_pg_skipped: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    if PG_URL is None and IN_CI:
        raise pytest.UsageError(
            "CI=true but AGENTCTL_TEST_DATABASE_URL is not set: the PostgreSQL half of the "
            "suite must run in CI (.ci/run provisions it)."
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # ``@pytest.mark.only_db("postgresql")``: a test that means one kind of database (replicas
    # need a shared PostgreSQL; SQLite's writer turn has no PostgreSQL counterpart) is not
    # collected for the other kind, rather than skipped there: CI runs with nothing skipped.
    kept, dropped = [], []
    for item in items:
        only = item.get_closest_marker("only_db")
        params = getattr(item, "callspec", None)
        kind = params.params.get("db_url") if params is not None else None
        if only is not None and kind is not None and kind != only.args[0]:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    if PG_URL is not None:
        return
    skip = pytest.mark.skip(reason="AGENTCTL_TEST_DATABASE_URL is not set")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
            _pg_skipped.append(item.nodeid)


def pytest_collection_finish(session: pytest.Session) -> None:
    # The suite runs app after app in process, so it sets its own cycle collector (an app run
    # in process leaves it alone: control_plane/kit/collector.py). Each test leaves some 50,000
    # dead objects in reference cycles (its app's routes, schemas, engines, connections); they
    # are freed when the test ends, and what is still alive then (modules, test items, warmed
    # caches) is frozen out of later collections. Collections during a test walk only what
    # that test made (over a full run: under 0.5 s in every test with a time bound, 1.1 s at
    # most in any). Before, a full collection ran rarely and had the whole run's garbage to
    # free: a 9.7 s pause in a worker that was measuring a 2 s propagation bound.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, *gc.get_threshold()[1:])


@pytest.hookimpl(trylast=True)
def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    # After teardown and after pytest dropped the test's fixtures (see pytest_collection_finish).
    gc.collect()
    gc.freeze()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _pg_skipped:
        terminalreporter.write_sep(
            "!",
            f"POSTGRESQL NOT TESTED: {len(_pg_skipped)} tests skipped; set "
            "AGENTCTL_TEST_DATABASE_URL (or run .ci/run) to test against PostgreSQL",
            red=True,
            bold=True,
        )


# --- no 500 anywhere ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_500(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fails any test during which an in-process app answered 500: a 500 tells clients "bug,
    do not retry", so bad input must be a 4xx and an unavailable database a 503. Real server
    processes are checked by tests/servers.py. Mark a test ``allow_500`` to provoke one."""
    answered: list[str] = []
    original = FastAPI.__call__

    async def watched(self: FastAPI, scope: Any, receive: Any, send: Any) -> None:
        async def watch(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] == 500:
                answered.append(f"{scope.get('method')} {scope.get('path')}")
            await send(message)

        await original(self, scope, receive, watch if scope["type"] == "http" else send)

    monkeypatch.setattr(FastAPI, "__call__", watched)
    yield
    if answered and request.node.get_closest_marker("allow_500") is None:
        pytest.fail(f"the app answered 500 to: {', '.join(answered)}")


# --- databases --------------------------------------------------------------------------------


def _pg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _pg_admin(sql: str) -> None:
    assert PG_URL is not None
    conn = await asyncpg.connect(_pg_dsn(PG_URL))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _pg_drop(name: str) -> None:
    """Drop a test database; a backend of another role (autovacuum) can hold it for a moment."""
    for _ in range(20):
        try:
            await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return
        except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
            await asyncio.sleep(0.25)
    warnings.warn(f"test database {name} could not be dropped", stacklevel=1)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    assert PG_URL is not None
    name = f"acp_tpl_{os.getpid()}"
    asyncio.run(_pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    asyncio.run(_pg_admin(f"CREATE DATABASE {name}"))
    upgrade(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    yield name
    asyncio.run(_pg_drop(name))


class PgClones:
    """Fresh clones of the migrated template, each made while the test before runs.

    ``CREATE DATABASE ... TEMPLATE`` takes about 0.5 s here, most of it the server writing the
    copy; made one ahead on a thread of its own, a test's database is ready when it asks. A
    clone that could not be made ahead (the server was restarting, say) is made when asked,
    so a failure shows in the test that needs the database. Used clones are dropped on the
    same thread (``DROP DATABASE`` waits for a checkpoint), all of them by ``close``."""

    def __init__(self, template: str) -> None:
        self._template = template
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-clone")
        self._ahead: Future[str] | None = None

    def _create(self) -> str:
        name = f"acp_t_{uuid.uuid4().hex[:16]}"
        asyncio.run(_pg_admin(f"CREATE DATABASE {name} TEMPLATE {self._template}"))
        return name

    def take(self) -> str:
        """The name of a database of this test's own, for `give_back` after the test."""
        ahead, self._ahead = self._ahead, self._executor.submit(self._create)
        if ahead is not None and ahead.exception() is None:
            return ahead.result()
        return self._create()

    def give_back(self, name: str) -> None:
        """Drop a clone ``take`` gave, after the test (the session waits for it at its end)."""
        self._executor.submit(asyncio.run, _pg_drop(name))

    def close(self) -> None:
        ahead, self._ahead = self._ahead, None
        self._executor.shutdown(wait=True)
        if ahead is not None and ahead.exception() is None:
            asyncio.run(_pg_drop(ahead.result()))


@pytest.fixture(scope="session")
def pg_clones(pg_template: str) -> Iterator[PgClones]:
    clones = PgClones(pg_template)
    yield clones
    clones.close()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of each kind."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "test.db"
        shutil.copyfile(template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    assert PG_URL is not None
    clones = request.getfixturevalue("pg_clones")
    name = clones.take()
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        clones.give_back(name)


@pytest.fixture
def is_postgres(db_url: str) -> bool:
    return db_url.startswith("postgresql")


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        data_dir=tmp_path / "data",
        environment="test",
        database_pool_size=30,
        # Generous bounds: the suite shares a loaded machine (tests of the bounds set their own).
        database_pool_timeout_seconds=30,
        database_connect_timeout_seconds=60,
        issuer="http://testserver",
        federation_refresh_seconds=86_400,  # see tests.fixtures.servers.server_env
    )


async def _bootstrap(settings: Settings) -> None:
    engine = create_engine(
        settings.resolved_database_url,
        timeouts=DatabaseTimeouts(connect=settings.database_connect_timeout_seconds),
    )
    try:
        async with create_sessionmaker(engine)() as session:
            await ensure_bootstrap_admin(session, ADMIN_TOKEN)
            await ensure_default_bundle(session, settings)
            await session.commit()
    finally:
        await engine.dispose()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    await _bootstrap(settings)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def admin() -> dict[str, str]:
    """Authorization header of the bootstrap platform_admin."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

"""Expired used-assertion and revoked-token rows are deleted: by ``prune_expired`` and by the
background task the app's lifespan starts (and stops)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlmodel import select

from control_plane.app import create_app
from control_plane.config import Settings
from control_plane.kit.database import Database
from control_plane.kit.time import utcnow
from control_plane.models import RevokedToken, UsedAssertion
from control_plane.oauth2 import repository
from control_plane.oauth2.pruning import prune_expired
from control_plane.state import app_state


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"prune_interval_seconds": 0.2})


async def _seed(database: Database) -> uuid.UUID:
    """Two rows of each kind: one expired a minute ago, one valid for another minute."""
    client = uuid.uuid4()
    now = utcnow()
    async with database.sessionmaker() as session:
        for jti, expires in (
            ("old", now - timedelta(minutes=1)),
            ("new", now + timedelta(minutes=1)),
        ):
            assert await repository.record_assertion(session, client, jti, expires)
            await repository.revoke_token(session, f"{jti}-{client}", client, expires)
        await session.commit()
    return client


async def _left(database: Database, client: uuid.UUID) -> tuple[set[str], set[str]]:
    async with database.read_sessionmaker() as session:
        assertions = await session.exec(
            select(UsedAssertion.jti).where(UsedAssertion.client_id == client)
        )
        revoked = await session.exec(
            select(RevokedToken.jti).where(RevokedToken.client_id == client)
        )
        return set(assertions.all()), set(revoked.all())


async def test_prune_expired_deletes_only_expired_rows(app: FastAPI) -> None:
    database = app_state(app).database
    await app_state(app).pruner.aclose()  # count this call's deletions, not the task's
    client = await _seed(database)

    pruned = await prune_expired(database)

    assert (pruned.assertions, pruned.revoked_tokens) == (1, 1)
    assert await _left(database, client) == ({"new"}, {f"new-{client}"})
    # Nothing left to prune: a second round deletes nothing.
    assert await prune_expired(database) == type(pruned)(0, 0)


async def test_the_lifespan_task_prunes_and_stops(settings: Settings, app: FastAPI) -> None:
    database = app_state(app).database
    assert app_state(app).pruner.running
    client = await _seed(database)

    for _ in range(100):
        if await _left(database, client) == ({"new"}, {f"new-{client}"}):
            break
        await asyncio.sleep(0.1)
    assert await _left(database, client) == ({"new"}, {f"new-{client}"})

    other = create_app(settings)
    async with other.router.lifespan_context(other):
        pruner = app_state(other).pruner
        assert pruner.running
    assert not pruner.running

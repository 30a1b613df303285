"""Applying and inspecting the Alembic migrations that ship inside the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

# Package data (the wheel ships it); Alembic needs a directory on disk, which an unzipped
# install always is.
MIGRATIONS_DIR = Path(str(resources.files("control_plane").joinpath("migrations")))


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def known_revision(revision: str) -> bool:
    """Whether `revision` is one of the migrations this version ships."""
    from alembic.util.exc import CommandError

    try:
        return (
            ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision(revision)
            is not None
        )
    except CommandError:
        return False


def upgrade(url: str) -> None:
    """Apply every migration up to head. Synchronous: call it outside a running event loop."""
    command.upgrade(alembic_config(url), "head")


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def stored_revision(url: str) -> str | None:
    """The database's current migration (None before the first). Synchronous, like `upgrade`."""
    import asyncio

    from control_plane.kit.db import create_engine

    async def read() -> str | None:
        engine = create_engine(url)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    return asyncio.run(read())

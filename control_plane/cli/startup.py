"""Start-up failures as one line on stderr: what went wrong and what to do, no traceback.

`serve`, `migrate` and the local administration commands (`operators create`, `keys rotate`) run
inside `startup()`. A failure it knows (bad settings, a database it cannot reach, migrations the
code does not know or that are behind, a missing default policy) becomes `StartupError`, printed
by the root command as `error: ...` with a non-zero exit. Anything else is printed the same way,
naming its type. `AGENTCTL_LOG_LEVEL=DEBUG` lets every exception through with its traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pydantic import ValidationError

from control_plane.cli._http import CliError, ExitCode

if TYPE_CHECKING:
    from control_plane.config import Settings


class StartupError(CliError):
    """The service cannot start (or the command cannot run) for a reason the operator can fix."""


def debugging() -> bool:
    return os.environ.get("AGENTCTL_LOG_LEVEL", "").strip().upper() == "DEBUG"


def load_settings() -> Settings:
    """The settings, or StartupError naming every bad variable on one line (exit 2)."""
    from control_plane.config import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        if debugging():
            raise
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            name = f"AGENTCTL_{where.upper()}" if where else "settings"
            # The message, never the input: a bad secret is not echoed.
            problems.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
        raise StartupError(
            "bad settings: " + "; ".join(problems) + " (fix the environment or .env)",
            ExitCode.usage,
        ) from None


def safe_url(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<the configured database URL>"


def _database_failure(exc: BaseException) -> bool:
    import asyncpg
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current,
            OSError | OperationalError | InterfaceError | DBAPIError | asyncpg.PostgresError,
        ):
            return True
        current = current.__cause__ or current.__context__
    return False


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


@contextmanager
def startup(settings: Settings) -> Iterator[None]:
    """Turn known start-up failures into StartupError (see the module docstring)."""
    from alembic.util.exc import CommandError

    from control_plane.crypto import KekMismatchError
    from control_plane.policy.bundles import PolicySourceError
    from control_plane.policy.defaults import DefaultPolicyMissingError

    try:
        yield
    except CliError:
        raise
    except Exception as exc:
        if debugging():
            raise
        url = safe_url(settings.resolved_database_url)
        if isinstance(exc, CommandError) and "Can't locate revision" in str(exc):
            raise StartupError(
                f"the database at {url} has a migration this agentctl does not know ({exc}): "
                "a newer version migrated it; run that version or restore a backup"
            ) from None
        if isinstance(exc, DefaultPolicyMissingError | KekMismatchError):
            raise StartupError(str(exc)) from None
        if isinstance(exc, PolicySourceError):
            raise StartupError(
                f"the default policy cannot be read: {exc}; fix it, or set "
                "AGENTCTL_DEFAULT_POLICY_DIR to a valid policy directory"
            ) from None
        if _database_failure(exc):
            raise StartupError(
                f"cannot use the database at {url}: {_first_line(exc)}; check "
                "AGENTCTL_DATABASE_URL and that the database is running and reachable"
            ) from None
        raise StartupError(
            f"start-up failed: {type(exc).__name__}: {_first_line(exc)} "
            "(AGENTCTL_LOG_LEVEL=DEBUG shows the traceback)"
        ) from None

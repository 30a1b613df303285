"""Commands run on the service's own machine: `serve`, `migrate`, `keys rotate`, `openapi`.

They use the settings (AGENTCTL_*) and the database directly, as an operator with shell access
to the deployment would, inside `startup()` (one line on stderr for a failure, no traceback).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from control_plane.cli._http import CliError, ExitCode
from control_plane.cli.startup import StartupError, load_settings, startup

if TYPE_CHECKING:
    from control_plane.config import Settings


def _private_sqlite_file(settings: Settings) -> None:
    """A new data dir is 0700 and a new SQLite file 0600 (its -wal and -shm files take the
    file's mode): the audit log, decisions and hashed secrets are the owner's alone, like the
    key-encryption key beside them. Existing files keep the mode they were given."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = make_url(settings.resolved_database_url).database
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    path = Path(name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o600)


def prepare(settings: Settings, *, migrate: bool = True) -> None:
    """Create SQLite's directory and apply the migrations (or, with `migrate=False`, refuse a
    database whose migrations are behind the code's)."""
    from control_plane.migrate import head_revision, known_revision, stored_revision, upgrade

    if settings.is_sqlite:
        _private_sqlite_file(settings)
    if migrate:
        upgrade(settings.resolved_database_url)
        return
    current, head = stored_revision(settings.resolved_database_url), head_revision()
    if current is not None and not known_revision(current):
        raise StartupError(
            f"the database has a migration this agentctl does not know ({current}): a newer "
            "version migrated it; run that version or restore a backup"
        )
    if current != head:
        raise StartupError(
            f"the database's migrations are behind (at {current or 'none'}, this version needs "
            f"{head}): run `agentctl migrate` first, or start without --no-migrate"
        )


async def _bootstrap(settings: Settings) -> str | None:
    """First-start state: the bootstrap admin token and the default policy bundle. Refuses a
    replica whose key-encryption key is not the one the database's keys were encrypted under
    (``KekMismatchError``: ``startup`` turns it into one line)."""
    from control_plane.audit import service as audit
    from control_plane.crypto import resolve_kek
    from control_plane.crypto.keystore import check_kek_of_signing_keys
    from control_plane.federation.signing import check_kek_of_key
    from control_plane.kit.db import create_engine, create_sessionmaker
    from control_plane.operators.service import ensure_bootstrap_admin
    from control_plane.policy.service import ensure_default_bundle

    engine = create_engine(settings.resolved_database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            configured = settings.admin_token.get_secret_value() if settings.admin_token else None
            token = await ensure_bootstrap_admin(session, configured)
            await ensure_default_bundle(session, settings)
            # After the policy (a start that fails on it makes no KEK file), before commit.
            kek = resolve_kek(settings)
            await check_kek_of_signing_keys(session, kek)
            await check_kek_of_key(session, kek)
            await audit.check_kek(session, kek)
            await session.commit()
            return token
    finally:
        await engine.dispose()


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8080,
    migrate: Annotated[
        bool,
        typer.Option(
            "--migrate/--no-migrate",
            help="Apply the migrations first (default); --no-migrate refuses to start when they "
            "are behind (a migration job applies them).",
        ),
    ] = True,
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="Serve HTTPS with this certificate chain (PEM).")
    ] = None,
    ssl_keyfile: Annotated[
        Path | None, typer.Option(help="The certificate's private key (PEM).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes sharing the port (uvicorn workers); metrics are merged.",
        ),
    ] = 1,
) -> None:
    """Run the API (applies the database migrations first)."""
    from control_plane.app import create_app
    from control_plane.kit.logging import configure_logging
    from control_plane.serving import serve as run

    tls = _tls_files(ssl_certfile, ssl_keyfile)
    settings = load_settings()
    _check_ports(host, port, settings.metrics_port)
    configure_logging(settings.log_level, json_lines=settings.json_logs)
    if settings.issuer is None:
        scheme = "https" if tls else "http"
        settings = settings.model_copy(update={"issuer": f"{scheme}://{host}:{port}"})
    with startup(settings):
        prepare(settings, migrate=migrate)
        token = asyncio.run(_bootstrap(settings))
        # With several workers each builds its own app (control_plane.app:serve_app).
        app = create_app(settings, tune_collector=True) if workers == 1 else None
    if token is not None:
        # Printed once, on the first start only; the database keeps just its hash.
        print(
            "\n  First start: created the bootstrap platform_admin token. It is shown only now.\n"
            f"\n    export AGENTCTL_TOKEN={token}\n",
            file=sys.stderr,
            flush=True,
        )
    # TLS in process: stock OPA fetches OAuth2 tokens over https only.
    run(
        settings,
        host=host,
        port=port,
        workers=workers,
        app=app,
        ssl_certfile=ssl_certfile if tls else None,
        ssl_keyfile=ssl_keyfile if tls else None,
    )


def _check_ports(host: str, port: int, metrics_port: int | None) -> None:
    """Both ports free and distinct, checked before anything starts (a port in use was
    uvicorn's bare 'Address already in use', after the bootstrap token was printed; the
    metrics port equal to --port answered /metrics to everyone and 404 to the API)."""
    if metrics_port is not None and metrics_port == port:
        raise StartupError(
            f"AGENTCTL_METRICS_PORT ({metrics_port}) must differ from --port: it serves "
            "/metrics without authentication and nothing else",
            ExitCode.usage,
        )
    for number, name in ((port, "--port"), (metrics_port, "AGENTCTL_METRICS_PORT")):
        if number is None or number == 0:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family=family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind((host, number))
            except OSError as exc:
                raise StartupError(
                    f"cannot listen on {host}:{number} ({name}): {exc.strerror}"
                ) from None


def _tls_files(certfile: Path | None, keyfile: Path | None) -> bool:
    """Whether to serve HTTPS: both files or neither (a usage error otherwise), and usable
    together (checked now, before anything starts, so a bad file is one line, not a traceback
    after "running on https")."""
    if certfile is None and keyfile is None:
        return False
    if certfile is None or keyfile is None:
        raise CliError("--ssl-certfile and --ssl-keyfile go together", ExitCode.usage)
    for path in (certfile, keyfile):
        if not path.is_file():
            raise CliError(f"cannot read {path}: no such file", ExitCode.usage)
    try:
        # A password callback: an encrypted key fails here instead of prompting on a terminal.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile, password=lambda: b"")
    except OSError as exc:  # ssl.SSLError included
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise CliError(
            f"cannot serve HTTPS with {certfile} and {keyfile}: {reason} (they must be a PEM "
            "certificate chain and its unencrypted PEM private key)",
            ExitCode.usage,
        ) from None
    return True


def migrate() -> None:
    """Apply the database migrations."""
    settings = load_settings()
    with startup(settings):
        prepare(settings)
    print("migrations applied")


def openapi(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
) -> None:
    """Print the OpenAPI document."""
    from control_plane.openapi import render

    text = render()
    if output is not None:
        output.write_text(text)
    else:
        sys.stdout.write(text)


keys = typer.Typer(help="Token signing keys (on the service's machine).", no_args_is_help=True)


@keys.command()
def rotate() -> None:
    """Add a new signing key and retire the current one."""
    from control_plane.crypto.keystore import rotate as rotate_key
    from control_plane.kit.db import create_engine, create_sessionmaker

    settings = load_settings()

    async def run() -> str:
        engine = create_engine(settings.resolved_database_url)
        try:
            return await rotate_key(create_sessionmaker(engine), settings)
        finally:
            await engine.dispose()

    with startup(settings):
        prepare(settings)
        kid = asyncio.run(run())
    print(f"new signing key {kid}; the previous key stays published until its tokens expire")


__all__ = ["ExitCode", "keys", "migrate", "openapi", "prepare", "serve"]

"""`agentctl`: run the service, administer it on its machine, and operate it over HTTP.

`agentctl <noun> <verb>` in the shape of kubectl and gh (Typer over Click, Rich for tables and
progress). One module per group; `GROUPS` lists them in the order `--help` shows them, and
`_http` holds what the HTTP commands share (connection options, the call, one-line errors, exit
codes, `--output json`). To add a group, write `control_plane/cli/<noun>.py` holding
`app = typer.Typer(help=...)` and its commands, then add one line to `GROUPS` (see AGENTS.md).

Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 denied. A failure prints one line on stderr,
`error: ...`, and a traceback only with `AGENTCTL_LOG_LEVEL=DEBUG`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from control_plane import __version__
from control_plane.cli import (
    agents,
    approvals,
    audit,
    budgets,
    credentials,
    decisions,
    domains,
    enforcement_points,
    events,
    operators,
    policy,
    server,
    versions,
    webhooks,
)
from control_plane.cli._http import CliError, ExitCode
from control_plane.cli.startup import debugging

# (name, sub-application): the noun groups, in the order `agentctl --help` lists them.
GROUPS: list[tuple[str, typer.Typer]] = [
    ("domains", domains.app),
    ("agents", agents.app),
    ("versions", versions.app),
    ("credentials", credentials.app),
    ("decisions", decisions.app),
    ("approvals", approvals.app),
    ("budgets", budgets.app),
    ("policy", policy.app),
    ("audit", audit.app),
    ("events", events.app),
    ("webhooks", webhooks.app),
    ("enforcement-points", enforcement_points.app),
    ("operators", operators.app),
    ("keys", server.keys),
]

app = typer.Typer(
    name="agentctl",
    help="Govern autonomous agents: run the control plane and operate it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"agentctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Govern autonomous agents: run the control plane and operate it."""


app.command()(server.serve)
app.command()(server.migrate)
app.command()(server.openapi)
for _name, _group in GROUPS:
    app.add_typer(_group, name=_name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `agentctl` with `argv` (default: the process's arguments); returns the exit code."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="agentctl")
    except CliError as exc:
        # The one place a failure is printed: one line, and the exit code scripts test.
        if debugging():
            raise
        typer.echo(f"error: {exc}", err=True)
        return exc.code
    except OSError as exc:
        # A file named on the command line that cannot be read or written (no such directory,
        # not a directory, permission): one line, like every other failure.
        if debugging():
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
        return ExitCode.error
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        typer.echo(str(exc.code), err=True)
        return ExitCode.error
    return 0


__all__ = ["GROUPS", "ExitCode", "app", "main"]

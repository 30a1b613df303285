"""`agentctl policy`: push and test Rego bundles; list bundles and revisions; activate one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from control_plane.cli._http import (
    DEFAULT_URL,
    After,
    Api,
    CliError,
    Column,
    ExitCode,
    Limit,
    Output,
    OutputOpt,
    Token,
    Url,
    check,
    emit,
    seg,
)

app = typer.Typer(help="Policy bundles: push, test, list, activate.", no_args_is_help=True)

BUNDLE_COLUMNS: list[Column] = [
    ("BUNDLE", "name"),
    ("ACTIVE REVISION", "active_revision"),
    ("UPDATED", "updated_at"),
]
REVISION_COLUMNS: list[Column] = [
    ("REVISION", "revision"),
    ("DIGEST", "digest"),
    ("ACTIVE", "active"),
    ("MODULES", "modules"),
    ("BY", "created_by"),
    ("AT", "created_at"),
]
Bundle = Annotated[str, typer.Option(help="The bundle's name.")]


@app.command()
def push(
    directory: Annotated[
        Path,
        typer.Argument(help="A policy directory (Rego, data.json).", exists=True, file_okay=False),
    ],
    bundle: Bundle = "default",
    activate: Annotated[bool, typer.Option(help="Activate the new revision.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Upload a policy directory as a new revision (validated by the server's OPA)."""
    from control_plane.policy.bundles import (
        PolicySourceError,
        read_policy_dir,
        write_bundle_archive,
    )

    try:
        source = read_policy_dir(directory)
    except PolicySourceError as exc:
        raise CliError(str(exc), ExitCode.usage) from None
    api = Api(url, token)
    with api.client(timeout=120) as client:
        r = client.post(
            f"/v1/policies/{seg(bundle)}/revisions",
            content=write_bundle_archive(source),
            headers={"Content-Type": "application/gzip"},
        )
        check(r)
        created = r.json()
        if output is Output.table:
            print(
                f"bundle {created['bundle']} revision {created['revision']} "
                f"{created['digest']} ({len(created['modules'])} modules)"
            )
        if activate:
            r = client.post(f"/v1/policies/{seg(bundle)}/revisions/{created['revision']}/activate")
            check(r)
            created = r.json()
            if output is Output.table:
                print(f"activated revision {created['revision']}")
    if output is Output.json:
        emit(created, output)


@app.command("test")
def test_(
    directory: Annotated[
        Path,
        typer.Argument(
            help="A policy directory with its _test.rego.", exists=True, file_okay=False
        ),
    ],
) -> None:
    """Check the directory with OPA and run its Rego tests (opa test)."""
    from control_plane.cli.startup import load_settings
    from control_plane.policy.validation import OpaUnavailableError, run_policy_tests

    settings = load_settings()
    try:
        report = run_policy_tests(str(directory), opa_bin=settings.opa_bin)
    except OpaUnavailableError as exc:
        raise CliError(str(exc), ExitCode.usage) from None
    sys.stdout.write(report.output if report.output.endswith("\n") else report.output + "\n")
    raise typer.Exit(report.exit_code)


@app.command("list")
def list_(
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Limit = 50,
    after: After = None,
    output: OutputOpt = Output.table,
) -> None:
    """List the policy bundles and their active revisions."""
    page = Api(url, token).call("GET", "/v1/policies", params={"limit": limit, "after": after})
    emit(page, output, BUNDLE_COLUMNS)


@app.command()
def revisions(
    bundle: Annotated[str, typer.Argument(help="The bundle's name.")] = "default",
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Limit = 50,
    after: After = None,
    output: OutputOpt = Output.table,
) -> None:
    """List a bundle's revisions."""
    page = Api(url, token).call(
        "GET", f"/v1/policies/{seg(bundle)}/revisions", params={"limit": limit, "after": after}
    )
    emit(page, output, REVISION_COLUMNS)


@app.command()
def get(
    revision: int,
    bundle: Bundle = "default",
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show one revision (its sources and data with --output json)."""
    body = Api(url, token).call("GET", f"/v1/policies/{seg(bundle)}/revisions/{revision}")
    if output is Output.table:
        body = {k: v for k, v in body.items() if k not in ("sources", "data")}
    emit(body, output)


@app.command()
def activate(
    revision: int,
    bundle: Bundle = "default",
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Make a revision the bundle's active one (decisions use it from then on)."""
    path = f"/v1/policies/{seg(bundle)}/revisions/{revision}/activate"
    body = Api(url, token).call("POST", path)
    if output is Output.table:
        body = {k: v for k, v in body.items() if k not in ("sources", "data")}
    emit(body, output)


from control_plane.cli.policy_impact import impact  # noqa: E402  (its own module: the CI gate)

app.command()(impact)
# Safe policy change (control_plane/cli/policy_rollout.py).
from control_plane.cli.policy_rollout import canary_app, shadow_app  # noqa: E402

app.add_typer(shadow_app, name="shadow")
app.add_typer(canary_app, name="canary")

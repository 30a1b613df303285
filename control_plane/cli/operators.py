"""`agentctl operators`: create an operator on the service's machine; list, get, revoke over HTTP.

`create` writes to the database named by the settings (as the bootstrap does), so the first
domain admins can be made before anyone holds a token; the others call the API.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from control_plane.auth.roles import Role
from control_plane.cli._http import (
    CliError,
    Column,
    ExitCode,
    key_command,
    list_command,
)
from control_plane.cli.startup import load_settings, startup

app = typer.Typer(help="Operators and their tokens.", no_args_is_help=True)

COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("ROLE", "role"),
    ("DOMAINS", "domains"),
    ("TOKEN", "token_prefix"),
    ("REVOKED", "revoked_at"),
]


@app.command()
def create(
    role: Annotated[Role, typer.Option(help="The operator's role.")],
    domain: Annotated[
        list[str] | None,
        typer.Option(help="A domain of a domain_admin or an approver (repeatable)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="A label (default: the role).")] = None,
) -> None:
    """Create an operator in the database and print its token once (JSON)."""
    from pydantic import ValidationError

    from control_plane.cli.server import prepare
    from control_plane.kit.db import create_engine, create_sessionmaker
    from control_plane.kit.errors import ProblemError
    from control_plane.operators.schemas import OperatorCreate
    from control_plane.operators.service import create as create_operator

    try:
        body = OperatorCreate(name=name or role.value, role=role, domains=domain or [])
    except ValidationError as exc:
        # One line, the validator's own words ("Value error, " and pydantic's links dropped).
        detail = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise CliError(f"validation_failed: {detail}", ExitCode.usage) from None
    settings = load_settings()

    async def run() -> str:
        engine = create_engine(settings.resolved_database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                created = await create_operator(
                    session, name=body.name, role=body.role, domain_names=body.domains
                )
                await session.commit()
                return json.dumps(
                    {
                        "id": str(created.operator.id),
                        "name": created.operator.name,
                        "role": created.operator.role,
                        "domains": created.operator.domains,
                        "token": created.token,
                    },
                    indent=2,
                )
        finally:
            await engine.dispose()

    with startup(settings):
        prepare(settings)
        try:
            print(asyncio.run(run()))
        except ProblemError as exc:
            raise CliError(f"{exc.code}: {exc.detail or exc.title}", ExitCode.usage) from None
    typer.echo("The token is shown only now; store it safely.", err=True)


list_command(app, "List operators.", path="/v1/operators", columns=COLUMNS)
key_command(app, "get", "Show one operator.", path="/v1/operators/{}", metavar="OPERATOR_ID")
key_command(
    app,
    "revoke",
    "Revoke an operator's token.",
    path="/v1/operators/{}/revoke",
    metavar="OPERATOR_ID",
    method="POST",
)

"""`agentctl domains`: list, get, create; the kill switch (suspend, resume)."""

from __future__ import annotations

from typing import Annotated

import typer

from control_plane.cli._http import (
    DEFAULT_URL,
    Api,
    Column,
    Output,
    OutputOpt,
    Token,
    Url,
    emit,
    key_command,
    list_command,
)

app = typer.Typer(help="Domains: the teams' areas of ownership.", no_args_is_help=True)

COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("DESCRIPTION", "description"),
    ("CREATED", "created_at"),
    ("SUSPENDED", "suspended_at"),
]

list_command(app, "List domains.", path="/v1/domains", columns=COLUMNS)
key_command(app, "get", "Show one domain.", path="/v1/domains/{}", metavar="NAME")


@app.command()
def create(
    name: str,
    description: Annotated[str, typer.Option(help="What the domain covers.")] = "",
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Create a domain."""
    body = {"name": name, "description": description}
    emit(Api(url, token).call("POST", "/v1/domains", body=body), output)


for _verb, _doc in (
    (
        "suspend",
        "Kill switch: refuse every agent of the domain (no new tokens; existing tokens and "
        "decisions refused on every replica within 1 s).",
    ),
    ("resume", "Turn the kill switch off (agents suspended on their own stay suspended)."),
):
    key_command(app, _verb, _doc, path=f"/v1/domains/{{}}/{_verb}", metavar="NAME", method="POST")

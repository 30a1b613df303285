"""`agentctl domains`: list, get, create; the kill switch (suspend, resume); budgets."""

from __future__ import annotations

from typing import Annotated

import typer

from control_plane.cli._http import (
    DEFAULT_URL,
    After,
    Api,
    Column,
    Limit,
    Output,
    OutputOpt,
    Token,
    Url,
    emit,
    post_verb,
    seg,
)

app = typer.Typer(help="Domains: the teams' areas of ownership.", no_args_is_help=True)

COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("DESCRIPTION", "description"),
    ("CREATED", "created_at"),
    ("SUSPENDED", "suspended_at"),
]


@app.command("list")
def list_(
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Limit = 50,
    after: After = None,
    output: OutputOpt = Output.table,
) -> None:
    """List domains."""
    page = Api(url, token).call("GET", "/v1/domains", params={"limit": limit, "after": after})
    emit(page, output, COLUMNS)


@app.command()
def get(
    name: str, url: Url = DEFAULT_URL, token: Token = None, output: OutputOpt = Output.table
) -> None:
    """Show one domain."""
    emit(Api(url, token).call("GET", f"/v1/domains/{seg(name)}"), output)


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


post_verb(
    app,
    "suspend",
    "Kill switch: refuse every agent of the domain (no new tokens, existing tokens and "
    "decisions refused on every replica within 1 s).",
    "/v1/domains/{}/suspend",
    "NAME",
)
post_verb(
    app,
    "resume",
    "Turn the domain's kill switch off (agents suspended on their own stay suspended).",
    "/v1/domains/{}/resume",
    "NAME",
)

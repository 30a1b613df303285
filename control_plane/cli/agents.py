"""`agentctl agents`: list, get, create, update and the lifecycle (suspend, resume, retire)."""

from __future__ import annotations

from typing import Annotated, Any

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
    key_command,
    parse_pairs,
    seg,
)

app = typer.Typer(help="Agents: register, update, suspend, resume, retire.", no_args_is_help=True)

COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("DOMAIN", "domain"),
    ("OWNER", "owner"),
    ("AUTONOMY", "autonomy_level"),
    ("STATUS", "status"),
    ("LABELS", "labels"),
]

Label = Annotated[
    list[str] | None, typer.Option("--label", help="key=value (repeatable).", show_default=False)
]


@app.command("list")
def list_(
    domain: Annotated[str | None, typer.Option(help="Only this domain's agents.")] = None,
    status: Annotated[str | None, typer.Option(help="active, suspended or retired.")] = None,
    label: Label = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Limit = 50,
    after: After = None,
    output: OutputOpt = Output.table,
) -> None:
    """List agents."""
    params = {
        "domain": domain,
        "status": status,
        "label": label or [],
        "limit": limit,
        "after": after,
    }
    emit(Api(url, token).call("GET", "/v1/agents", params=params), output, COLUMNS)


key_command(app, "get", "Show one agent.", path="/v1/agents/{}", metavar="AGENT_ID")


@app.command()
def create(
    name: str,
    domain: Annotated[str, typer.Option(help="The owning domain.")],
    owner: Annotated[str, typer.Option(help="Who answers for the agent.")],
    description: Annotated[str, typer.Option()] = "",
    autonomy_level: Annotated[
        int, typer.Option(min=0, max=3, help="0 observe .. 3 autonomous.")
    ] = 0,
    label: Label = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Register an agent."""
    body = {
        "name": name,
        "domain": domain,
        "owner": owner,
        "description": description,
        "autonomy_level": autonomy_level,
        "labels": parse_pairs(label or [], "--label"),
    }
    emit(Api(url, token).call("POST", "/v1/agents", body=body), output)


@app.command()
def update(
    agent_id: str,
    owner: Annotated[str | None, typer.Option()] = None,
    description: Annotated[str | None, typer.Option()] = None,
    autonomy_level: Annotated[int | None, typer.Option(min=0, max=3)] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="key=value (repeatable); replaces every label."),
    ] = None,
    if_match: Annotated[
        str | None,
        typer.Option(help="Update only if the agent still has this ETag (default: the current)."),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Change an agent's owner, description, autonomy level or labels."""
    body: dict[str, Any] = {
        "owner": owner,
        "description": description,
        "autonomy_level": autonomy_level,
    }
    if label is not None:
        body["labels"] = parse_pairs(label, "--label")
    body = {k: v for k, v in body.items() if v is not None}
    api, path = Api(url, token), f"/v1/agents/{seg(agent_id)}"
    # The API refuses an update without If-Match (lost updates); by default, the current ETag.
    headers = {"If-Match": if_match or api.etag(path)}
    emit(api.call("PATCH", path, body=body, headers=headers), output)


for _verb, _doc in (
    ("suspend", "Suspend an agent: its tokens stop working until it is resumed."),
    ("resume", "Resume a suspended agent (one of a suspended domain stays refused)."),
    ("retire", "Retire an agent for good."),
):
    key_command(
        app, _verb, _doc, path=f"/v1/agents/{{}}/{_verb}", metavar="AGENT_ID", method="POST"
    )

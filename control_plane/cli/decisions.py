"""`agentctl decisions`: the decision records (agents ask for decisions through the SDK)."""

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
    seg,
)

app = typer.Typer(help="Policy decisions taken for agents.", no_args_is_help=True)

COLUMNS: list[Column] = [
    ("ID", "id"),
    ("AGENT", "agent_id"),
    ("ACTION", "action"),
    ("EFFECT", "effect"),
    ("REASONS", "reasons"),
    ("REVISION", lambda row: f"{row.get('bundle')}@{row.get('revision')}"),
    ("AT", "created_at"),
]

REPLAY_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("AGENT", "agent_id"),
    ("CLIENT", "client_id"),
    ("AT", "replayed_at"),
]


@app.command("list")
def list_(
    agent_id: Annotated[str | None, typer.Option(help="Only this agent's decisions.")] = None,
    effect: Annotated[str | None, typer.Option(help="allow, deny or require_approval.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339: at or after.")] = None,
    until: Annotated[str | None, typer.Option(help="RFC 3339: before.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Limit = 50,
    after: After = None,
    output: OutputOpt = Output.table,
) -> None:
    """List decisions, newest first."""
    params = {
        "agent_id": agent_id,
        "effect": effect,
        "action": action,
        "since": since,
        "until": until,
        "limit": limit,
        "after": after,
    }
    emit(Api(url, token).call("GET", "/v1/decisions", params=params), output, COLUMNS)


@app.command()
def replays(
    decision_id: str,
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Limit = 50,
    after: After = None,
    output: OutputOpt = Output.table,
) -> None:
    """List the replays of a decision (the same request sent again)."""
    page = Api(url, token).call(
        "GET",
        f"/v1/decisions/{seg(decision_id)}/replays",
        params={"limit": limit, "after": after},
    )
    emit(page, output, REPLAY_COLUMNS)

"""`agentctl decisions`: the decision records (agents ask for decisions through the SDK)."""

from __future__ import annotations

from datetime import UTC, datetime
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
    Since,
    Token,
    Until,
    Url,
    emit,
    parse_time,
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
    since: Since = None,
    until: Until = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Limit = 50,
    after: After = None,
    output: OutputOpt = Output.table,
) -> None:
    """List decisions, oldest first (by id)."""
    params = {
        "agent_id": agent_id,
        "effect": effect,
        "action": action,
        "since": parse_time(since, now := datetime.now(UTC)),
        "until": parse_time(until, now, "--until"),
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

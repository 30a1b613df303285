"""`agentctl budgets`: an agent's or a domain's rate limits and daily spend: get, set.

Limits: actions per minute, actions per hour, spend per day (UTC, minor units, read from the
decision input's `spend_field`). An allowed decision takes its share of the agent's windows and
of its domain's; one that would pass a limit is denied `budget_exceeded`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from control_plane.cli._http import (
    DEFAULT_URL,
    Api,
    CliError,
    Column,
    ExitCode,
    Output,
    OutputOpt,
    Token,
    Url,
    emit,
    seg,
)

app = typer.Typer(
    help="Budgets: rate limits and daily spend of an agent or a domain.", no_args_is_help=True
)

# The table of `get` and `set`: one row per limited window, with its current use.
COLUMNS: list[Column] = [
    ("WINDOW", "window"),
    ("LIMIT", "limit"),
    ("USED", "used"),
    ("REMAINING", "remaining"),
    ("RESETS", "resets_at"),
]

AgentOpt = Annotated[
    str | None, typer.Option("--agent", help="The agent's id.", show_default=False)
]
DomainOpt = Annotated[
    str | None, typer.Option("--domain", help="The domain's name.", show_default=False)
]
Window = Annotated[
    int | None, typer.Option(min=0, max=2**31 - 1, show_default=False, help="Left out: no limit.")
]


def _path(agent: str | None, domain: str | None) -> str:
    if (agent is None) == (domain is None):
        raise CliError("give exactly one of --agent ID and --domain NAME", ExitCode.usage)
    if agent is not None:
        return f"/v1/agents/{seg(agent)}/budget"
    return f"/v1/domains/{seg(domain or '')}/budget"


def _emit(budget: Any, output: Output) -> None:
    if output is Output.json or not isinstance(budget, dict):
        emit(budget, output)
        return
    rows = [{"window": name, **use} for name, use in (budget.get("use") or {}).items()]
    who = f"{budget.get('scope')} {budget.get('key')}"
    if not rows:
        typer.echo(f"{who}: no limits")
        return
    typer.echo(f"{who} (spend from {budget.get('spend_field')}):")
    emit({"data": rows, "has_more": False}, output, COLUMNS)


@app.command()
def get(
    agent: AgentOpt = None,
    domain: DomainOpt = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show the limits of an agent (--agent) or a domain (--domain) and their current use."""
    _emit(Api(url, token).call("GET", _path(agent, domain)), output)


@app.command("set")
def set_(
    agent: AgentOpt = None,
    domain: DomainOpt = None,
    actions_per_minute: Window = None,
    actions_per_hour: Window = None,
    spend_per_day: Annotated[
        int | None,
        typer.Option(min=0, show_default=False, help="Minor units (cents) a UTC day."),
    ] = None,
    spend_field: Annotated[
        str, typer.Option(help="Where the decision input holds the amount.")
    ] = "resource.amount",
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Set the limits of an agent or a domain. Replaces them all: a limit not given is removed
    (none given: no limits). Use so far is kept."""
    body = {
        "actions_per_minute": actions_per_minute,
        "actions_per_hour": actions_per_hour,
        "spend_per_day": spend_per_day,
        "spend_field": spend_field,
    }
    _emit(Api(url, token).call("PUT", _path(agent, domain), body=body), output)

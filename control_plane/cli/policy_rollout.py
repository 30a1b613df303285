"""`agentctl policy shadow` and `agentctl policy canary`: safe policy change (README, "Safe
policy change"). Sub-groups of `agentctl policy` (added in ``cli/policy.py``)."""

from __future__ import annotations

from typing import Annotated

import typer

from control_plane.cli._http import (
    DEFAULT_URL,
    Api,
    CliError,
    Column,
    ExitCode,
    Limit,
    Output,
    OutputOpt,
    Token,
    Url,
    emit,
    seg,
)

shadow_app = typer.Typer(
    help="Evaluate a revision beside every decision and list the differences.",
    no_args_is_help=True,
)
canary_app = typer.Typer(
    help="Serve a revision to a share of agents or to named domains; promote or roll back.",
    no_args_is_help=True,
)

Bundle = Annotated[str, typer.Option(help="The bundle's name.")]
DIFF_COLUMNS: list[Column] = [
    ("DECISION", "decision_id"),
    ("ACTION", "action"),
    ("DOMAIN", "domain"),
    ("REVISION", "revision"),
    ("SHADOW", "shadow_revision"),
    ("OLD", "old_effect"),
    ("NEW", "new_effect"),
    ("NEW REASONS", "new_reasons"),
    ("AT", "decided_at"),
]
SUMMARY_COLUMNS: list[Column] = [("ACTION", "action"), ("CHANGE", "change"), ("COUNT", "count")]


def _bundle_line(body: dict[str, object]) -> None:
    canary = body.get("canary")
    print(
        f"bundle {body['name']}: active {body['active_revision']}, "
        f"shadow {body['shadow_revision'] or '-'}, canary "
        + (
            f"{canary['revision']} ({canary['percent']}% + domains "
            f"{','.join(canary['domains']) or '-'})"
            if isinstance(canary, dict)
            else "-"
        )
    )


def _show(body: dict[str, object], output: Output) -> None:
    if output is Output.table:
        _bundle_line(body)
    else:
        emit(body, output)


@shadow_app.command("set")
def shadow_set(
    revision: int,
    bundle: Bundle = "default",
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Evaluate REVISION beside every decision (never changing an answer)."""
    body = Api(url, token).call(
        "PUT", f"/v1/policies/{seg(bundle)}/shadow", body={"revision": revision}
    )
    _show(body, output)


@shadow_app.command("clear")
def shadow_clear(
    bundle: Bundle = "default",
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Stop shadow evaluation (the differences stay listed)."""
    _show(Api(url, token).call("DELETE", f"/v1/policies/{seg(bundle)}/shadow"), output)


@shadow_app.command("diffs")
def shadow_diffs(
    bundle: Bundle = "default",
    revision: Annotated[
        int | None, typer.Option(help="Only this shadow revision's differences.")
    ] = None,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    summary: Annotated[bool, typer.Option(help="Counts per action and change.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Limit = 50,
    after: Annotated[str | None, typer.Option(help="Cursor (next_after).")] = None,
    output: OutputOpt = Output.table,
) -> None:
    """List the decisions the shadow revision would have answered differently."""
    api = Api(url, token)
    if summary:
        body = api.call(
            "GET",
            f"/v1/policies/{seg(bundle)}/shadow/summary",
            params={"shadow_revision": revision},
        )
        if output is Output.table:
            emit({"data": body["changes"]}, output, SUMMARY_COLUMNS)
            print(f"total {body['total']}")
        else:
            emit(body, output)
        return
    page = api.call(
        "GET",
        f"/v1/policies/{seg(bundle)}/shadow/diffs",
        params={"shadow_revision": revision, "action": action, "limit": limit, "after": after},
    )
    emit(page, output, DIFF_COLUMNS)


@canary_app.command("start")
def canary_start(
    revision: int,
    percent: Annotated[
        float, typer.Option(help="Share of agents, 0-100 (hash of bundle and agent id).")
    ] = 0,
    domains: Annotated[
        str | None, typer.Option(help="Comma-separated domains whose every agent is on it.")
    ] = None,
    bundle: Bundle = "default",
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Serve REVISION to --percent of agents and to every agent of --domains."""
    names = [d.strip() for d in (domains or "").split(",") if d.strip()]
    if percent <= 0 and not names:
        raise CliError("Give --percent or --domains (or both).", ExitCode.usage)
    body = Api(url, token).call(
        "PUT",
        f"/v1/policies/{seg(bundle)}/canary",
        body={"revision": revision, "percent": percent, "domains": names},
    )
    _show(body, output)


@canary_app.command("promote")
def canary_promote(
    bundle: Bundle = "default",
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Activate the canary revision for every agent (the canary ends)."""
    _show(Api(url, token).call("POST", f"/v1/policies/{seg(bundle)}/canary/promote"), output)


@canary_app.command("rollback")
def canary_rollback(
    bundle: Bundle = "default",
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """End the canary: every agent gets the active revision from the next decision."""
    _show(Api(url, token).call("POST", f"/v1/policies/{seg(bundle)}/canary/rollback"), output)

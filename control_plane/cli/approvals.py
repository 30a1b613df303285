"""`agentctl approvals`: the human in the loop: list, get, approve, deny.

A `require_approval` decision creates an approval bound to the exact action; an approver of its
domain (or a platform_admin) who does not own the agent approves or denies it, and the agent's
retry with the approval's id is allowed once.
"""

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
    key_command,
    seg,
)

app = typer.Typer(help="Approvals: a human's verdict on an agent's action.", no_args_is_help=True)

COLUMNS: list[Column] = [
    ("ID", "id"),
    ("DOMAIN", "domain"),
    ("AGENT", "agent_id"),
    ("ACTION", "action"),
    ("STATE", "state"),
    ("REASONS", "reasons"),
    ("EXPIRES", "expires_at"),
    ("BY", "resolved_by"),
]


@app.command("list")
def list_(
    state: Annotated[
        str | None, typer.Option(help="pending, approved, denied, used or expired.")
    ] = None,
    domain: Annotated[str | None, typer.Option(help="Only this domain's approvals.")] = None,
    agent_id: Annotated[str | None, typer.Option(help="Only this agent's approvals.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Limit = 50,
    after: After = None,
    output: OutputOpt = Output.table,
) -> None:
    """List the approvals you may see, oldest first."""
    params = {
        "state": state,
        "domain": domain,
        "agent_id": agent_id,
        "limit": limit,
        "after": after,
    }
    emit(Api(url, token).call("GET", "/v1/approvals", params=params), output, COLUMNS)


key_command(
    app,
    "get",
    "Show one approval: the action it is bound to, its state, who resolved it.",
    path="/v1/approvals/{}",
    metavar="APPROVAL_ID",
)


def _verdict(verb: str, doc: str) -> None:
    def command(
        approval_id: str,
        comment: Annotated[
            str | None, typer.Option(help="Why; kept with the approval and in the audit log.")
        ] = None,
        url: Url = DEFAULT_URL,
        token: Token = None,
        output: OutputOpt = Output.table,
    ) -> None:
        path = f"/v1/approvals/{seg(approval_id)}/{verb}"
        emit(Api(url, token).call("POST", path, body={"comment": comment}), output)

    command.__doc__ = doc
    app.command(verb)(command)


_verdict(
    "approve",
    "Approve a pending approval: the agent's retry of that exact action is allowed once. "
    "Not by the agent's owner (separation of duties).",
)
_verdict("deny", "Deny a pending approval: the agent's retry is denied (approval_denied).")

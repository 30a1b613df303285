"""`agentctl versions`: an agent's versions: list, get, register, approve, activate, deprecate."""

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

app = typer.Typer(
    help="Agent versions: register, approve, activate, deprecate.", no_args_is_help=True
)

COLUMNS: list[Column] = [
    ("ID", "id"),
    ("VERSION", "version"),
    ("MODEL", lambda row: f"{row.get('model_name')} {row.get('model_version')}"),
    ("DIGEST", "artifact_digest"),
    ("STATE", "state"),
]


@app.command("list")
def list_(
    agent_id: str,
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Limit = 50,
    after: After = None,
    output: OutputOpt = Output.table,
) -> None:
    """List an agent's versions."""
    page = Api(url, token).call(
        "GET", f"/v1/agents/{seg(agent_id)}/versions", params={"limit": limit, "after": after}
    )
    emit(page, output, COLUMNS)


@app.command()
def get(
    agent_id: str,
    version_id: str,
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show one version."""
    path = f"/v1/agents/{seg(agent_id)}/versions/{seg(version_id)}"
    emit(Api(url, token).call("GET", path), output)


@app.command()
def register(
    agent_id: str,
    version: Annotated[str, typer.Option(help="Semantic version, e.g. 1.4.0.")],
    model_name: Annotated[str, typer.Option(help="The model the agent runs.")],
    model_version: Annotated[str, typer.Option(help="The model's version.")],
    artifact_digest: Annotated[
        str, typer.Option(help="sha256:<64 hex> of the agent's code or image.")
    ],
    signature: Annotated[str | None, typer.Option(help="A signature of the artifact.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Register a new version of an agent."""
    body = {
        "version": version,
        "model_name": model_name,
        "model_version": model_version,
        "artifact_digest": artifact_digest,
        "signature": signature,
    }
    path = f"/v1/agents/{seg(agent_id)}/versions"
    emit(Api(url, token).call("POST", path, body=body), output)


def _transition(verb: str, doc: str) -> None:
    def command(
        agent_id: str,
        version_id: str,
        url: Url = DEFAULT_URL,
        token: Token = None,
        output: OutputOpt = Output.table,
    ) -> None:
        path = f"/v1/agents/{seg(agent_id)}/versions/{seg(version_id)}/{verb}"
        emit(Api(url, token).call("POST", path), output)

    command.__doc__ = doc
    app.command(verb)(command)


_transition("approve", "Approve a registered version (credentials can then bind to it).")
_transition("activate", "Make an approved version the agent's active one.")
_transition("deprecate", "Deprecate a version.")

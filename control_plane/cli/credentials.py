"""`agentctl credentials`: an agent's OAuth2 clients: list, create, revoke."""

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
    read_json_file,
    seg,
)

app = typer.Typer(help="Agent credentials (OAuth2 clients).", no_args_is_help=True)

COLUMNS: list[Column] = [
    ("CLIENT ID", "client_id"),
    ("METHOD", "auth_method"),
    ("SCOPES", "scopes"),
    ("EXPIRES", "expires_at"),
    ("REVOKED", "revoked_at"),
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
    """List an agent's credentials."""
    page = Api(url, token).call(
        "GET", f"/v1/agents/{seg(agent_id)}/credentials", params={"limit": limit, "after": after}
    )
    emit(page, output, COLUMNS)


@app.command()
def create(
    agent_id: str,
    scope: Annotated[list[str], typer.Option(help="A scope the tokens carry (repeatable).")],
    expires_at: Annotated[
        str | None, typer.Option(help="RFC 3339 time the credential stops.")
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="Bind to this approved version of the agent.")
    ] = None,
    jwk: Annotated[
        str | None,
        typer.Option(help="File with a public JWK: private_key_jwt instead of a secret."),
    ] = None,
    description: Annotated[str, typer.Option()] = "",
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Create a credential; a client secret is shown in this answer only."""
    body: dict[str, Any] = {"scopes": scope, "description": description}
    if expires_at is not None:
        body["expires_at"] = expires_at
    if version is not None:
        body["version"] = version
    if jwk is not None:
        body["public_jwk"] = read_json_file(jwk, "--jwk")
    path = f"/v1/agents/{seg(agent_id)}/credentials"
    emit(Api(url, token).call("POST", path, body=body), output)


@app.command()
def revoke(
    agent_id: str,
    client_id: str,
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Revoke a credential (its tokens stop working)."""
    path = f"/v1/agents/{seg(agent_id)}/credentials/{seg(client_id)}/revoke"
    emit(Api(url, token).call("POST", path), output)

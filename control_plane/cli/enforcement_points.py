"""`agentctl enforcement-points`: the OPA configuration of an enforcement point.

The configuration is rendered by the control plane (`control_plane.federation.opa_config`,
`GET /v1/domains/{domain}/enforcement-points/{name}/opa-config`); the client secret stays
`${AGENTCTL_OPA_CLIENT_SECRET}` for OPA to substitute (only its hash is stored).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from control_plane.cli._http import DEFAULT_URL, Api, Token, Url, seg

app = typer.Typer(
    help="Enforcement points: OPA sidecars and SDKs in local mode.", no_args_is_help=True
)


@app.command()
def config(
    name: str,
    domain: Annotated[str, typer.Option(help="The point's domain.")],
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Print a ready OPA configuration for an enforcement point."""
    path = f"/v1/domains/{seg(domain)}/enforcement-points/{seg(name)}/opa-config"
    sys.stdout.write(str(Api(url, token).call("GET", path)))

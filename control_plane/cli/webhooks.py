"""`agentctl webhooks`: subscribe URLs to events: list, get, create, delete; deliveries.

Deliveries are signed per Standard Webhooks with the secret `create` shows once, retried with
backoff and dead-lettered after the configured failures; `redeliver` sends one again.
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
    list_command,
    seg,
)

app = typer.Typer(help="Webhooks: events pushed to your URL, signed.", no_args_is_help=True)

COLUMNS: list[Column] = [
    ("ID", "id"),
    ("URL", "url"),
    ("TYPES", lambda row: row.get("types") or "all"),
    ("DOMAIN", lambda row: row.get("domain") or "all"),
    ("BY", "created_by"),
    ("CREATED", "created_at"),
]

DELIVERY_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("EVENT", "event_id"),
    ("TYPE", "event_type"),
    ("STATE", "state"),
    ("ATTEMPTS", "attempts"),
    ("LAST STATUS", "last_status"),
    ("LAST ERROR", "last_error"),
    ("NEXT", "next_attempt_at"),
]


list_command(app, "List the webhooks you manage.", path="/v1/webhooks", columns=COLUMNS)
key_command(app, "get", "Show one webhook.", path="/v1/webhooks/{}", metavar="WEBHOOK_ID")


@app.command()
def create(
    target: Annotated[str, typer.Argument(metavar="URL", help="Where to POST the events.")],
    type_: Annotated[
        list[str] | None,
        typer.Option("--type", help="An event type to send (repeatable; default: all)."),
    ] = None,
    domain: Annotated[
        str | None, typer.Option(help="Only this domain's events (default: all you see).")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Subscribe a URL to events; the signing secret is shown in this answer only."""
    body = {"url": target, "types": type_ or [], "domain": domain}
    emit(Api(url, token).call("POST", "/v1/webhooks", body=body), output)


@app.command()
def delete(webhook_id: str, url: Url = DEFAULT_URL, token: Token = None) -> None:
    """Unsubscribe: nothing more is queued; pending deliveries are dead-lettered."""
    Api(url, token).call("DELETE", f"/v1/webhooks/{seg(webhook_id)}")
    typer.echo(f"deleted webhook {webhook_id}")


@app.command()
def deliveries(
    webhook_id: str,
    state: Annotated[str | None, typer.Option(help="pending, delivered or dead.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Limit = 50,
    after: After = None,
    output: OutputOpt = Output.table,
) -> None:
    """List a webhook's deliveries, oldest first."""
    params = {"state": state, "limit": limit, "after": after}
    path = f"/v1/webhooks/{seg(webhook_id)}/deliveries"
    emit(Api(url, token).call("GET", path, params=params), output, DELIVERY_COLUMNS)


@app.command()
def redeliver(
    webhook_id: str,
    delivery_id: str,
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Send a delivery again (e.g. a dead-lettered one): due now, attempts reset."""
    path = f"/v1/webhooks/{seg(webhook_id)}/deliveries/{seg(delivery_id)}/redeliver"
    emit(Api(url, token).call("POST", path), output)

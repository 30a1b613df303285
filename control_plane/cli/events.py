"""`agentctl events`: the outbox of CloudEvents 1.0: list a page by cursor, tail the stream.

`list` reads `GET /v1/events` one page at a time (pass `--after` the cursor `more:` prints).
`tail` follows the same endpoint as Server-Sent Events and, when the server ends a stream (it
does after five minutes), reconnects with `Last-Event-ID` so no event is missed. Delivery is at
least once: de-duplicate by `id`.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import httpx
import typer
from httpx_sse import SSEError, connect_sse

from control_plane.cli._http import (
    DEFAULT_URL,
    After,
    Api,
    CliError,
    Column,
    Output,
    OutputOpt,
    Token,
    Url,
    check,
    emit,
)

app = typer.Typer(help="Events: the outbox, by cursor or as a stream.", no_args_is_help=True)

COLUMNS: list[Column] = [
    ("CURSOR", "cursor"),
    ("TIME", "time"),
    ("TYPE", "type"),
    ("SUBJECT", "subject"),
]

Types = Annotated[
    list[str] | None,
    typer.Option("--type", help="Only this type, e.g. approval.requested.v1 (repeatable)."),
]
Domain = Annotated[str | None, typer.Option(help="Only this domain's events.")]

# A stream sends a comment every 15 s; a minute of silence is a dead connection.
STREAM_TIMEOUT = httpx.Timeout(30.0, read=60.0)
RECONNECT_SECONDS = 1.0  # the server's `retry:` hint


@app.command("list")
def list_(
    type_: Types = None,
    domain: Domain = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many events.")] = 100,
    after: After = None,
    output: OutputOpt = Output.table,
) -> None:
    """List events after a cursor (default: from the first), oldest first."""
    params = {"type": type_ or [], "domain": domain, "limit": limit, "after": after}
    emit(Api(url, token).call("GET", "/v1/events", params=params), output, COLUMNS)


def _line(event: dict[str, Any], output: Output) -> str:
    if output is Output.json:
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    data = json.dumps(event.get("data"), separators=(",", ":"), ensure_ascii=False)
    subject = event.get("subject") or "-"
    return f"{event.get('cursor')}  {event.get('time')}  {event.get('type')}  {subject}  {data}"


@app.command()
def tail(
    type_: Types = None,
    domain: Domain = None,
    after: After = None,
    count: Annotated[
        int | None,
        typer.Option(min=1, help="Stop after this many events (default: follow until Ctrl-C)."),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Follow events as they happen (Server-Sent Events), resuming after a dropped stream: a
    line an event, or with `-o json` one CloudEvent a line (JSON Lines)."""
    params = {"type": type_ or [], "domain": domain}
    query = {k: v for k, v in params.items() if v not in (None, [])}
    last, seen = after, 0
    with Api(url, token).client(STREAM_TIMEOUT) as client:
        while True:
            headers = {"Last-Event-ID": last} if last else {}
            with connect_sse(client, "GET", "/v1/events", params=query, headers=headers) as source:
                if not source.response.is_success:
                    source.response.read()
                    check(source.response)
                try:
                    for sse in source.iter_sse():
                        if not sse.data:
                            continue
                        event = json.loads(sse.data)
                        typer.echo(_line(event, output))
                        last, seen = sse.id or event.get("cursor"), seen + 1
                        if count is not None and seen >= count:
                            return
                except SSEError as exc:
                    raise CliError(f"not an event stream: {exc}") from None
            time.sleep(RECONNECT_SECONDS)  # the server ended the stream: resume after `last`

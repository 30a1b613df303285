"""`agentctl audit`: records, checkpoints, verifier keys; export a log and verify it.

`verify` works offline (an export, a signed checkpoint and the verifier key: nothing of the
server is trusted) or asks the server (`--url`). `export --output` names the file to write (the
one flag here that is not the output format), and shows a progress bar.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TimeRemainingColumn,
)

from control_plane.cli._http import (
    DEFAULT_URL,
    After,
    Api,
    CliError,
    Column,
    ExitCode,
    Limit,
    Output,
    OutputOpt,
    Since,
    Token,
    Until,
    Url,
    check,
    emit,
    parse_time,
    seg,
    stderr,
)

app = typer.Typer(
    help="The audit logs: records, checkpoints, export, verify.", no_args_is_help=True
)

RECORD_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("DOMAIN", "domain"),
    ("AGENT", "agent_id"),
    ("ACTION", "action"),
    ("STATUS", "status"),
    ("AT", "timestamp"),
]
CHECKPOINT_COLUMNS: list[Column] = [
    ("DOMAIN", "domain"),
    ("SIZE", "size"),
    ("ROOT HASH", "root_hash"),
    ("AT", "created_at"),
]
Domain = Annotated[str | None, typer.Option(help="Only this domain.")]


@app.command("list")
def list_(
    domain: Domain = None,
    agent_id: Annotated[str | None, typer.Option()] = None,
    action: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option()] = None,
    decision_id: Annotated[str | None, typer.Option()] = None,
    trace_id: Annotated[str | None, typer.Option()] = None,
    since: Since = None,
    until: Until = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Limit = 50,
    after: After = None,
    output: OutputOpt = Output.table,
) -> None:
    """List audit records."""
    params = {
        "domain": domain,
        "agent_id": agent_id,
        "action": action,
        "status": status,
        "decision_id": decision_id,
        "trace_id": trace_id,
        "since": parse_time(since, now := datetime.now(UTC)),
        "until": parse_time(until, now, "--until"),
        "limit": limit,
        "after": after,
    }
    emit(Api(url, token).call("GET", "/v1/audit/records", params=params), output, RECORD_COLUMNS)


@app.command()
def get(
    record_id: str, url: Url = DEFAULT_URL, token: Token = None, output: OutputOpt = Output.table
) -> None:
    """Show one record with its place in the log and its inclusion proof."""
    emit(Api(url, token).call("GET", f"/v1/audit/records/{seg(record_id)}"), output)


@app.command()
def checkpoints(
    domain: Domain = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    limit: Limit = 50,
    after: After = None,
    output: OutputOpt = Output.table,
) -> None:
    """List signed checkpoints, oldest first."""
    params = {"domain": domain, "limit": limit, "after": after}
    page = Api(url, token).call("GET", "/v1/audit/checkpoints", params=params)
    emit(page, output, CHECKPOINT_COLUMNS)


@app.command()
def checkpoint(domain: str, url: Url = DEFAULT_URL, token: Token = None) -> None:
    """Print a domain's latest signed checkpoint (a C2SP signed note, for `verify --checkpoint`)."""
    note = Api(url, token).call("GET", f"/v1/audit/logs/{seg(domain)}/checkpoint")
    typer.echo(note, nl=False)


@app.command()
def keys(
    domain: Domain = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """The checkpoint verifier keys (for `verify --key`)."""
    body = Api(url, token).call("GET", "/v1/audit/keys", params={"domain": domain})
    if output is Output.table:
        emit({"data": body["keys"]}, output, [("NAME", "name"), ("KEY", "verifier_key")])
    else:
        emit(body, output)


@app.command()
def export(
    domain: Annotated[str, typer.Option(help="The domain whose log to export.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The JSON Lines file to write ('-': stdout).")
    ],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Stream a domain's log to a JSON Lines file, with a progress bar."""
    written = 0
    to_stdout = str(output) == "-"
    with (
        Api(url, token).client(timeout=httpx.Timeout(60, read=300)) as client,
        client.stream("GET", "/v1/audit/export", params={"domain": domain}) as r,
    ):
        if not r.is_success:
            r.read()
            check(r)
        total = int(r.headers.get("x-audit-log-size", "0"))
        opened = (
            contextlib.nullcontext(sys.stdout) if to_stdout else output.open("w", encoding="utf-8")
        )
        with opened as sink, _progress(quiet, count=True) as progress:
            task = progress.add_task(f"export {domain}", total=total)
            for line in r.iter_lines():
                if line:
                    sink.write(line + "\n")
                    written += 1
                    progress.advance(task)
    where = "stdout" if to_stdout else output
    typer.echo(f"exported {written} records of {domain} to {where}", err=True)


def _progress(quiet: bool, *, count: bool = False) -> Progress:
    """A progress bar on stderr (records, or bytes read), off with --quiet."""
    done = MofNCompleteColumn() if count else DownloadColumn()
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        done,
        TimeRemainingColumn(),
        console=stderr,
        disable=quiet,
        transient=not count,
    )


class VerifyOutput(StrEnum):
    text = "text"
    json = "json"


def _report(results: list[dict[str, Any]], ok: bool, output: VerifyOutput) -> None:
    if output is VerifyOutput.json:
        print(json.dumps({"ok": ok, "logs": results}, indent=2))
    else:
        for item in results:
            where = item.get("domain") or item.get("file")
            if item.get("first_bad_index") is None and item.get("reason") is None:
                print(f"ok: {where}: {item['size']} records verified")
            elif item.get("first_bad_index") is None:  # the checkpoint, not a record
                print(f"BAD: {where}: {item.get('reason')}")
            else:
                print(
                    f"BAD: {where}: first bad index {item.get('first_bad_index')}: "
                    f"{item.get('reason')}"
                )
    if not ok:
        raise typer.Exit(ExitCode.error)


@app.command()
def verify(
    file: Annotated[
        Path | None, typer.Argument(help="An export made by `agentctl audit export`.")
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="File holding the signed checkpoint note.")
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="The note verifier key (or a file holding it).")
    ] = None,
    domain: Annotated[str | None, typer.Option(help="With --url: only this domain's log.")] = None,
    url: Annotated[
        str | None,
        typer.Option(envvar="AGENTCTL_URL", help="Ask this control plane instead."),
    ] = None,
    token: Token = None,
    output: Annotated[VerifyOutput, typer.Option("--output", "-o")] = VerifyOutput.text,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Verify an export offline (FILE --checkpoint --key) or ask the server (--url)."""
    if file is None:
        if not url:
            raise CliError(
                "give an export FILE (offline) or --url (ask the server)", ExitCode.usage
            )
        params = {"domain": domain} if domain else {}
        with stderr.status("the server is verifying its logs", spinner="dots") as spinner:
            if quiet:
                spinner.stop()
            body = Api(url, token).call("GET", "/v1/audit/verify", params=params, timeout=600)
        _report(body["logs"], bool(body["ok"]), output)
        return

    from control_plane.audit.note import NoteError
    from control_plane.audit.offline import verify_export

    if checkpoint is None or not key:
        raise CliError("offline verification needs --checkpoint and --key", ExitCode.usage)
    key_text = Path(key).read_text().strip() if Path(key).is_file() else key
    try:
        note = checkpoint.read_text(encoding="utf-8")
        with file.open(encoding="utf-8") as lines, _progress(quiet) as progress:
            task = progress.add_task(f"verify {file.name}", total=file.stat().st_size)

            def read() -> Iterator[str]:
                for line in lines:
                    progress.advance(task, len(line.encode()))
                    yield line

            status = verify_export(read(), note, key_text)
    except OSError as exc:
        raise CliError(f"cannot read {exc.filename}: {exc.strerror}", ExitCode.usage) from None
    except NoteError as exc:
        raise CliError(f"the verifier key is not valid: {exc}", ExitCode.usage) from None
    result = {
        "file": str(file),
        "size": status.size,
        "checkpoint_size": status.checkpoint_size,
        "first_bad_index": status.first_bad_index,
        "reason": status.reason,
    }
    _report([result], status.ok, output)

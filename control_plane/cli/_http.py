"""What every command over HTTP shares: the connection options, the call, the error line, output.

Exit codes scripts can test (`ExitCode`): 0 ok, 1 error, 2 usage, 3 not found, 4 denied (401 or
403). A failed call prints one line on stderr, `error: <code>: <detail>` from the RFC 9457
problem details (with the per-field errors of a 422 on the same line), and exits with the code
that fits its status. `--output json` prints the API's answer as it came (the OpenAPI schemas
describe it); the default is a table for people.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.table import Table


class ExitCode(IntEnum):
    ok = 0
    error = 1
    usage = 2
    not_found = 3
    denied = 4


class CliError(Exception):
    """A failure the root command prints as one `error: ...` line before exiting with `code`."""

    def __init__(self, message: str, code: ExitCode = ExitCode.error) -> None:
        super().__init__(message)
        self.code = code


class Output(StrEnum):
    table = "table"
    json = "json"


DEFAULT_URL = "http://127.0.0.1:8080"

Url = Annotated[
    str,
    typer.Option("--url", envvar="AGENTCTL_URL", help="The control plane's base URL."),
]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="AGENTCTL_TOKEN", help="An operator token.", show_default=False),
]
OutputOpt = Annotated[
    Output,
    typer.Option(
        "--output", "-o", help="table (for people) or json (the API's answer, for scripts)."
    ),
]
Limit = Annotated[
    int, typer.Option(min=1, max=200, help="At most this many items (the API's page limit).")
]
After = Annotated[str | None, typer.Option(help="Start after this cursor (a list's next_after).")]
# Time filters: read by parse_time (a duration ago, or an RFC 3339 time).
Since = Annotated[
    str | None, typer.Option(help="At or after: 7d, 12h, 30m ago, or an RFC 3339 time.")
]
Until = Annotated[str | None, typer.Option(help="Before: 7d, 12h, 30m ago, or an RFC 3339 time.")]

stdout = Console(highlight=False, soft_wrap=False)
stderr = Console(stderr=True, highlight=False)


def seg(value: str) -> str:
    """One path segment, percent-encoded (a name or id typed by the user). Raises a usage
    ``CliError`` for a value that cannot be one segment: empty, ``.`` or ``..`` (URL
    normalisation would drop them and reach another route) or holding ``/``."""
    if value in ("", ".", "..") or "/" in value:
        raise CliError(f"{value!r} is not a name or id", ExitCode.usage)
    return quote(value, safe="")


def exit_code_for(status: int) -> ExitCode:
    if status == 404:
        return ExitCode.not_found
    if status in (401, 403):
        return ExitCode.denied
    return ExitCode.error


def problem_line(response: httpx.Response) -> str:
    """One line from a problem details answer: `<code>: <detail> (<field>: <detail>; ...)`."""
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        text = " ".join(response.text.split())[:300]
        return f"HTTP {response.status_code}: {text or response.reason_phrase}"
    code = problem.get("code") or problem.get("error") or f"http_{response.status_code}"
    detail = problem.get("detail") or problem.get("title") or problem.get("error_description")
    line = f"{code}: {detail}" if detail else str(code)
    fields = [
        f"{item.get('pointer') or item.get('field') or '?'}: {item.get('detail')}"
        for item in problem.get("errors") or []
        if isinstance(item, dict)
    ]
    if fields:
        line += " (" + "; ".join(fields) + ")"
    return " ".join(line.split())


@dataclass(frozen=True, slots=True)
class Api:
    """The control plane at `url`, called with the operator `token`."""

    url: str
    token: str | None

    @contextmanager
    def client(self, timeout: httpx.Timeout | float = 30) -> Iterator[httpx.Client]:
        if not self.token:
            raise CliError("set AGENTCTL_TOKEN (an operator token) or pass --token", ExitCode.usage)
        base = self.url.rstrip("/")
        if base.endswith("/v1"):  # every path the CLI sends starts with /v1 itself
            raise CliError(
                f"--url (AGENTCTL_URL) is the server's base URL, without /v1: "
                f"{base.removesuffix('/v1')}",
                ExitCode.usage,
            )
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            with httpx.Client(base_url=base, headers=headers, timeout=timeout) as client:
                yield client
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {base}: {exc}") from None

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> Any:
        """Send one request; the parsed JSON answer, or CliError carrying the problem line."""
        query = {k: v for k, v in (params or {}).items() if v is not None and v != []}
        with self.client(timeout) as client:
            response = client.request(method, path, params=query, json=body, headers=headers)
            check(response)
            if not response.content:
                return None
            if "json" not in response.headers.get("content-type", ""):
                return response.text
            return response.json()

    def etag(self, path: str) -> str:
        """The current ETag of the resource at `path` (for an update's If-Match)."""
        with self.client() as client:
            response = client.get(path)
            check(response)
        tag: str | None = response.headers.get("etag")
        if not tag:
            raise CliError(f"{path} answered without an ETag")
        return tag


def check(response: httpx.Response) -> None:
    """CliError (one line, exit code by status) unless the answer is a success. A 422 that
    names only path parameters (an id or name typed as an argument) is a usage error (2)."""
    if not response.is_success:
        code = exit_code_for(response.status_code)
        if response.status_code == 422 and _only_path_errors(response):
            code = ExitCode.usage
        raise CliError(problem_line(response), code)


def _only_path_errors(response: httpx.Response) -> bool:
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return False
    pointers = [e.get("pointer", "") for e in errors if isinstance(e, dict)]
    return bool(pointers) and all(str(p).startswith("/path/") for p in pointers)


# A column: its header, and the field it shows (or a function of the row).
Column = tuple[str, str | Callable[[Mapping[str, Any]], Any]]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    return str(value)


def _print(table: Table) -> None:
    console = stdout if stdout.is_terminal else Console(highlight=False, width=100_000)
    console.print(table)


def emit(body: Any, output: Output, columns: Sequence[Column] = ()) -> None:
    """Print an answer: JSON as it came, or a table (a list's rows, or one object's fields)."""
    if output is Output.json:
        sys.stdout.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
        return
    if isinstance(body, dict) and isinstance(body.get("data"), list) and columns:
        table = Table(box=None, pad_edge=False)
        for header, _ in columns:
            # Never an ellipsis: ids are copied from here. Folded in a terminal, one line in a pipe.
            table.add_column(header, overflow="fold")
        for row in body["data"]:
            table.add_row(*(_cell(f(row) if callable(f) else row.get(f)) for _, f in columns))
        _print(table)
        if body.get("has_more"):
            stderr.print(f"more: --after {body.get('next_after')}")
        return
    if isinstance(body, dict):
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in body.items():
            table.add_row(key, _cell(value))
        _print(table)
        return
    stdout.print(_cell(body))


def key_command(
    app: typer.Typer, verb: str, doc: str, *, path: str, metavar: str, method: str = "GET"
) -> None:
    """Add `<verb> KEY` to `app`: `method` (without a body) on `path.format(KEY)`, KEY
    percent-encoded, and print the answer. For `get` and the lifecycle steps (suspend ...)."""

    def command(
        key: str = typer.Argument(..., metavar=metavar, show_default=False),
        url: Url = DEFAULT_URL,
        token: Token = None,
        output: OutputOpt = Output.table,
    ) -> None:
        emit(Api(url, token).call(method, path.format(seg(key))), output)

    command.__doc__ = doc
    app.command(verb)(command)


def list_command(app: typer.Typer, doc: str, *, path: str, columns: Sequence[Column]) -> None:
    """Add `list` to `app`: one page of the collection at `path` (`--limit`, `--after`)."""

    def command(
        url: Url = DEFAULT_URL,
        token: Token = None,
        limit: Limit = 50,
        after: After = None,
        output: OutputOpt = Output.table,
    ) -> None:
        page = Api(url, token).call("GET", path, params={"limit": limit, "after": after})
        emit(page, output, columns)

    command.__doc__ = doc
    app.command("list")(command)


def parse_pairs(values: Sequence[str], what: str) -> dict[str, str]:
    """`key=value` arguments as a dict (usage error otherwise)."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} must look like key=value, not {item!r}")
        pairs[key] = value
    return pairs


def read_json_file(path: str, what: str) -> Any:
    """A JSON document from a file (`-` for stdin); a usage error names the file otherwise."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise CliError(f"{what}: cannot read JSON from {path}: {exc}", ExitCode.usage) from None


_DURATION = re.compile(r"^(\d{1,9})([smhdw])$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str | None, now: datetime, option: str = "--since") -> str | None:
    """A time option: ``7d``, ``12h``, ``30m``, ``90s``, ``2w`` before ``now`` (RFC 3339, UTC),
    or an RFC 3339 time with an offset as is; CliError (usage) naming ``option`` otherwise."""
    if value is None:
        return None
    match = _DURATION.match(value.strip())
    if match is not None:
        try:
            start = now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        except OverflowError:
            raise CliError(f"{option} {value} is too far back", ExitCode.usage) from None
        return start.isoformat(timespec="seconds").replace("+00:00", "Z")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise CliError(
            f"{option} {value!r}: give a duration (7d, 12h, 30m) or an RFC 3339 time with an "
            "offset",
            ExitCode.usage,
        )
    return value

"""`agentctl policy impact`: what a candidate revision would change in past decisions.

A pipeline gates a policy pull request on it: the directory is uploaded as a candidate revision
(never activated), the server replays the stored decisions against it
(``POST /v1/policies/{bundle}/revisions/{revision}/impact``, polling the job for large windows)
and the command exits 1 when a change named in ``--fail-on`` occurred, 0 otherwise, 2 on usage
errors. ``--output json`` prints the report, valid against openapi/impact-report.schema.json.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import httpx
import typer
from rich.table import Table

from control_plane.cli._http import (
    DEFAULT_URL,
    Api,
    CliError,
    ExitCode,
    Output,
    OutputOpt,
    Token,
    Url,
    check,
    emit,
    parse_time,
    seg,
    stderr,
    stdout,
)

EFFECTS: Final = ("allow", "deny", "require_approval")


def parse_fail_on(value: str | None) -> list[str]:
    """``deny->allow,allow->deny`` as a list of transitions; CliError (usage) on anything that
    is not ``<effect>-><other effect>``."""
    if not value:
        return []
    out: list[str] = []
    for item in (part.strip() for part in value.split(",")):
        old, sep, new = item.partition("->")
        if not sep or old not in EFFECTS or new not in EFFECTS or old == new:
            raise CliError(
                f"--fail-on {item!r}: expected <effect>-><effect> with effects "
                f"{', '.join(EFFECTS)} (e.g. deny->allow)",
                ExitCode.usage,
            )
        out.append(item)
    return out


def _candidate(client: httpx.Client, target: str, bundle: str, quiet: bool) -> int:
    """The revision to analyse: ``target`` uploaded when it is a directory, else its number."""
    path = Path(target)
    if path.is_dir():
        from control_plane.policy.bundles import (
            PolicySourceError,
            read_policy_dir,
            write_bundle_archive,
        )

        try:
            source = read_policy_dir(path)
        except PolicySourceError as exc:
            raise CliError(str(exc), ExitCode.usage) from None
        r = client.post(
            f"/v1/policies/{seg(bundle)}/revisions",
            content=write_bundle_archive(source),
            headers={"Content-Type": "application/gzip"},
        )
        check(r)
        number: int = r.json()["revision"]
        if not quiet:
            stderr.print(f"uploaded {target} as candidate revision {number} (not activated)")
        return number
    if target.isdigit() and 1 <= int(target) < 2**31:
        return int(target)
    raise CliError(
        f"{target!r} is neither a policy directory nor a revision number", ExitCode.usage
    )


def _wait(client: httpx.Client, location: str, job: dict[str, Any], quiet: bool) -> Any:
    """Poll a background job until it finishes; its report, or CliError when it failed."""
    from rich.progress import Progress

    with Progress(console=stderr, transient=True, disable=quiet) as progress:
        task = progress.add_task("replaying decisions", total=job["total"] or 1)
        while job["status"] == "running":
            time.sleep(0.5)
            r = client.get(location)
            check(r)
            job = r.json()
            progress.update(task, completed=job["done"])
    if job["status"] != "succeeded":
        raise CliError(f"impact analysis failed: {job.get('error')}")
    return job["report"]


def _summary(report: dict[str, Any]) -> None:
    table = Table(title=f"Impact of {report['bundle']} revision {report['revision']}")
    table.add_column("CHANGE")
    table.add_column("DECISIONS", justify="right")
    for change, count in report["changes"].items():
        table.add_row(change, str(count))
    table.add_row("unchanged", str(report["unchanged"]))
    for reason, count in report["not_exact"].items():
        if count:
            table.add_row(f"not exact: {reason}", str(count))
    table.add_row("total", str(report["total"]))
    stdout.print(table)
    if report["changed"]:
        changed = Table(title="Changed decisions", box=None)
        for header in ("DECISION", "OLD", "NEW", "NEW REASONS", "EXACT"):
            changed.add_column(header, overflow="fold")
        for c in report["changed"]:
            changed.add_row(
                c["decision_id"],
                c["old_effect"],
                c["new_effect"],
                ", ".join(c["new_reasons"]) or "-",
                "yes" if c["exact"] else "no",
            )
        stdout.print(changed)
        if report["changed_truncated"]:
            stderr.print("more changed decisions than listed (see the totals)")


def impact(
    target: Annotated[
        str, typer.Argument(help="A policy directory (uploaded as a candidate) or a revision.")
    ],
    bundle: Annotated[str, typer.Option(help="The bundle's name.")] = "default",
    since: Annotated[
        str | None, typer.Option(help="Decisions since: 7d, 12h, 30m, or an RFC 3339 time.")
    ] = None,
    domain: Annotated[str | None, typer.Option(help="Only this domain's decisions.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent's decisions (id).")] = None,
    action: Annotated[str | None, typer.Option(help="Only decisions on this action.")] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=100_000, help="At most this many decisions.")
    ] = 10_000,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on", help="Exit 1 when any of these changes occurs: deny->allow,allow->deny."
        ),
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    output: OutputOpt = Output.table,
) -> None:
    """Replay past decisions against a candidate revision and report what would change."""
    failing = parse_fail_on(fail_on)
    body = {
        "since": parse_time(since, datetime.now(UTC)),
        "domain": domain,
        "agent_id": agent,
        "action": action,
        "limit": limit,
    }
    body = {k: v for k, v in body.items() if v is not None}
    quiet = output is Output.json
    with Api(url, token).client(timeout=300) as client:
        revision = _candidate(client, target, bundle, quiet)
        path = f"/v1/policies/{seg(bundle)}/revisions/{revision}/impact"
        r = client.post(path, json=body)
        check(r)
        report = r.json()
        if r.status_code == 202:
            report = _wait(
                client, r.headers.get("location") or f"{path}/{report['id']}", report, quiet
            )
    if output is Output.json:
        emit(report, output)
    else:
        _summary(report)
    found = {
        change: report["changes"][change] for change in failing if report["changes"].get(change)
    }
    if found:
        listed = ", ".join(f"{change} ({count})" for change, count in found.items())
        raise CliError(f"changes named in --fail-on occurred: {listed}", ExitCode.error)

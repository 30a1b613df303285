"""``agentctl``: run the service and administer it from the machine it runs on.

Commands that change state (``migrate``, ``operators create``) talk to the database named by the
settings directly, as an operator with shell access to the deployment would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from control_plane.auth.principals import Role
from control_plane.config import Settings, get_settings
from control_plane.kit.db import create_engine, create_sessionmaker
from control_plane.kit.errors import ProblemError
from control_plane.migrate import upgrade


def _prepare(settings: Settings) -> None:
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)


async def _bootstrap(settings: Settings) -> str | None:
    """First-start state: the bootstrap admin token and the default policy bundle."""
    from control_plane.operators.service import ensure_bootstrap_admin
    from control_plane.policy.service import ensure_default_bundle

    engine = create_engine(settings.resolved_database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            configured = settings.admin_token.get_secret_value() if settings.admin_token else None
            token = await ensure_bootstrap_admin(session, configured)
            await ensure_default_bundle(session, settings)
            await session.commit()
            return token
    finally:
        await engine.dispose()


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    _prepare(settings)
    print("migrations applied")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from control_plane.kit.logging import configure_logging
    from control_plane.serving import serve

    configure_logging(settings.log_level, json_lines=settings.json_logs)
    _prepare(settings)
    if settings.issuer is None:
        settings = settings.model_copy(update={"issuer": f"http://{args.host}:{args.port}"})
    token = asyncio.run(_bootstrap(settings))
    if token is not None:
        # Printed once, on the first start only; the database keeps just its hash.
        print(
            "\n  First start: created the bootstrap platform_admin token. It is shown only now.\n"
            f"\n    export AGENTCTL_TOKEN={token}\n",
            file=sys.stderr,
            flush=True,
        )
    serve(settings, host=args.host, port=args.port, workers=args.workers)
    return 0


def cmd_operators_create(settings: Settings, args: argparse.Namespace) -> int:
    from control_plane.operators.schemas import OperatorCreate
    from control_plane.operators.service import create

    try:
        body = OperatorCreate(name=args.name or args.role, role=args.role, domains=args.domain)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _prepare(settings)

    async def run() -> str:
        engine = create_engine(settings.resolved_database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                created = await create(
                    session, name=body.name, role=body.role, domain_names=body.domains
                )
                await session.commit()
                return json.dumps(
                    {
                        "id": str(created.operator.id),
                        "name": created.operator.name,
                        "role": created.operator.role,
                        "domains": created.operator.domains,
                        "token": created.token,
                    },
                    indent=2,
                )
        finally:
            await engine.dispose()

    try:
        print(asyncio.run(run()))
    except ProblemError as exc:
        print(f"error: {exc.detail or exc.title}", file=sys.stderr)
        return 2
    print("The token is shown only now; store it safely.", file=sys.stderr)
    return 0


def cmd_keys_rotate(settings: Settings, _args: argparse.Namespace) -> int:
    from control_plane.crypto.keystore import rotate

    _prepare(settings)

    async def run() -> str:
        engine = create_engine(settings.resolved_database_url)
        try:
            return await rotate(create_sessionmaker(engine), settings)
        finally:
            await engine.dispose()

    kid = asyncio.run(run())
    print(f"new signing key {kid}; the previous key stays published until its tokens expire")
    return 0


def _api(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    url = (args.url or os.environ.get("AGENTCTL_URL") or "http://127.0.0.1:8080").rstrip("/")
    token = args.token or os.environ.get("AGENTCTL_TOKEN")
    if not token:
        raise SystemExit("error: set AGENTCTL_TOKEN (an operator token) or pass --token")
    return url, {"Authorization": f"Bearer {token}"}


def _print_problem(response: Any) -> None:
    try:
        problem = response.json()
    except ValueError:
        print(f"error: HTTP {response.status_code}: {response.text[:500]}", file=sys.stderr)
        return
    print(f"error: {problem.get('detail') or problem.get('title')}", file=sys.stderr)
    for item in problem.get("errors") or []:
        print(f"  {item.get('detail')}", file=sys.stderr)


def cmd_policy_push(settings: Settings, args: argparse.Namespace) -> int:
    import httpx

    from control_plane.policy.bundles import (
        PolicySourceError,
        read_policy_dir,
        write_bundle_archive,
    )

    try:
        source = read_policy_dir(args.directory)
    except PolicySourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    url, headers = _api(args)
    headers["Content-Type"] = "application/gzip"
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            r = client.post(
                f"/v1/policies/{args.bundle}/revisions", content=write_bundle_archive(source)
            )
            if r.status_code != 201:
                _print_problem(r)
                return 1
            created = r.json()
            print(
                f"bundle {created['bundle']} revision {created['revision']} "
                f"{created['digest']} ({len(created['modules'])} modules)"
            )
            if args.activate:
                r = client.post(
                    f"/v1/policies/{args.bundle}/revisions/{created['revision']}/activate"
                )
                if r.status_code != 200:
                    _print_problem(r)
                    return 1
                print(f"activated revision {created['revision']}")
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_policy_test(settings: Settings, args: argparse.Namespace) -> int:
    from control_plane.policy.validation import OpaUnavailableError, run_policy_tests

    try:
        report = run_policy_tests(args.directory, opa_bin=settings.opa_bin)
    except OpaUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(report.output if report.output.endswith("\n") else report.output + "\n")
    return report.exit_code


def cmd_openapi(settings: Settings, args: argparse.Namespace) -> int:
    from control_plane.openapi import render

    text = render()
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_audit_export(settings: Settings, args: argparse.Namespace) -> int:
    """Stream a domain's log to a JSON Lines file, with a progress bar."""
    import httpx
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    url, headers = _api(args)
    out = Path(args.output)
    console = Console(stderr=True)
    try:
        with (
            httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(60, read=300)) as c,
            c.stream("GET", "/v1/audit/export", params={"domain": args.domain}) as r,
        ):
            if r.status_code != 200:
                r.read()
                _print_problem(r)
                return 1
            total = int(r.headers.get("x-audit-log-size", "0"))
            written = 0
            with (
                out.open("w", encoding="utf-8") as sink,
                Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=console,
                    disable=args.quiet,
                ) as progress,
            ):
                task = progress.add_task(f"export {args.domain}", total=total)
                for line in r.iter_lines():
                    if line:
                        sink.write(line + "\n")
                        written += 1
                        progress.advance(task)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    print(f"exported {written} records of {args.domain} to {out}", file=sys.stderr)
    return 0


def _report_verification(results: list[dict[str, Any]], ok: bool, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"ok": ok, "logs": results}, indent=2))
    else:
        for item in results:
            where = item.get("domain") or item.get("file")
            if item.get("first_bad_index") is None and item.get("reason") is None:
                print(f"ok: {where}: {item['size']} records verified")
            else:
                print(
                    f"BAD: {where}: first bad index {item.get('first_bad_index')}: "
                    f"{item.get('reason')}"
                )
    return 0 if ok else 1


def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Offline (FILE with --checkpoint and --key) or by asking the server (--url)."""
    if args.file is None:
        import httpx

        if not (args.url or os.environ.get("AGENTCTL_URL")):
            print("error: give an export FILE (offline) or --url (ask the server)", file=sys.stderr)
            return 2
        url, headers = _api(args)
        params = {"domain": args.domain} if args.domain else {}
        try:
            r = httpx.get(f"{url}/v1/audit/verify", params=params, headers=headers, timeout=600)
        except httpx.HTTPError as exc:
            print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
            return 1
        if r.status_code != 200:
            _print_problem(r)
            return 1
        body = r.json()
        return _report_verification(body["logs"], bool(body["ok"]), args.output == "json")

    from control_plane.audit.note import NoteError
    from control_plane.audit.offline import verify_export

    if not args.checkpoint or not args.key:
        print("error: offline verification needs --checkpoint and --key", file=sys.stderr)
        return 2
    key = Path(args.key).read_text().strip() if Path(args.key).is_file() else args.key
    try:
        note = Path(args.checkpoint).read_text(encoding="utf-8")
        with Path(args.file).open(encoding="utf-8") as lines:
            status = verify_export(lines, note, key)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NoteError as exc:
        print(f"error: the verifier key is not valid: {exc}", file=sys.stderr)
        return 2
    result = {
        "file": args.file,
        "size": status.size,
        "checkpoint_size": status.checkpoint_size,
        "first_bad_index": status.first_bad_index,
        "reason": status.reason,
    }
    return _report_verification([result], status.ok, args.output == "json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentctl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API (applies migrations first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the port (uvicorn workers); metrics are merged",
    )
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(func=cmd_migrate)

    operators = sub.add_parser("operators", help="manage operator tokens")
    ops = operators.add_subparsers(dest="operators_command", required=True)
    create = ops.add_parser("create", help="create an operator and print its token once")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument(
        "--domain", action="append", default=[], help="domain of a domain_admin (repeatable)"
    )
    create.add_argument("--name", help="a label for the operator (default: the role)")
    create.set_defaults(func=cmd_operators_create)

    keys = sub.add_parser("keys", help="manage token signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate_cmd = keys_sub.add_parser("rotate", help="add a new signing key and retire the current")
    rotate_cmd.set_defaults(func=cmd_keys_rotate)

    policy = sub.add_parser("policy", help="push and test Rego policy bundles")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    push = policy_sub.add_parser("push", help="upload a policy directory as a new revision")
    push.add_argument("directory")
    push.add_argument("--bundle", default="default")
    push.add_argument("--activate", action="store_true", help="activate the new revision")
    push.add_argument("--url", help="control plane URL (AGENTCTL_URL)")
    push.add_argument("--token", help="operator token (AGENTCTL_TOKEN)")
    push.set_defaults(func=cmd_policy_push)
    test = policy_sub.add_parser(
        "test", help="check the directory with OPA and run its Rego tests (opa test)"
    )
    test.add_argument("directory")
    test.set_defaults(func=cmd_policy_test)

    audit = sub.add_parser("audit", help="export and verify the audit logs")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_sub.add_parser("export", help="stream a domain's log to a JSON Lines file")
    export.add_argument("--domain", required=True)
    export.add_argument("--output", "-o", required=True, help="file to write")
    export.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    export.add_argument("--url", help="control plane URL (AGENTCTL_URL)")
    export.add_argument("--token", help="operator token (AGENTCTL_TOKEN)")
    export.set_defaults(func=cmd_audit_export)
    verify = audit_sub.add_parser(
        "verify",
        help="verify an export offline (FILE --checkpoint --key) or ask the server (--url)",
    )
    verify.add_argument("file", nargs="?", help="an export made by `agentctl audit export`")
    verify.add_argument("--checkpoint", help="file holding the signed checkpoint note")
    verify.add_argument("--key", help="the note verifier key (or a file holding it)")
    verify.add_argument("--domain", help="with --url: only this domain's log")
    verify.add_argument("--url", help="ask this control plane instead (AGENTCTL_URL)")
    verify.add_argument("--token", help="operator token (AGENTCTL_TOKEN)")
    verify.add_argument("--output", choices=["text", "json"], default="text")
    verify.set_defaults(func=cmd_audit_verify)

    openapi = sub.add_parser("openapi", help="print the OpenAPI document")
    openapi.add_argument("--output", "-o", help="write to this file instead of stdout")
    openapi.set_defaults(func=cmd_openapi)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            name = f"AGENTCTL_{where.upper()}" if where else "settings"
            print(f"error: {name}: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    code: int = args.func(settings, args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

"""The pinned OPA binary as the authority on Rego: `opa check`, `inspect`, `eval` and `test`.

Every call asks for OPA's JSON output (`--format json`) and reads it as data; nothing here parses
OPA's text. `check` runs `opa check --strict --capabilities capabilities.json -b DIR`, so a module
calling a builtin outside the builtins both engines implement is an `undefined function` type
error, named by OPA with its file and row. The binary is resolved once per call site from
`AGENTCTL_OPA_BIN`, else the place `scripts/install-opa.sh` installs the pinned version.

All functions block (subprocesses): call them from a worker thread.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

OPA_VERSION: Final = "1.22.2"
CAPABILITIES: Final = Path(__file__).with_name("capabilities.json")
INSTALL_HINT: Final = (
    "install the pinned OPA with `make opa` (scripts/install-opa.sh) and point "
    "AGENTCTL_OPA_BIN at it"
)


class OpaUnavailableError(RuntimeError):
    """No usable OPA binary: nothing can be validated, so nothing may be stored."""


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One problem found in a bundle; `line` is 1-based, None when no location is known."""

    file: str
    line: int | None
    column: int | None
    message: str
    code: str = "invalid_policy"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        """`file:line:column: message`, the parts that are known."""
        where = ":".join(str(p) for p in (self.file, self.line, self.column) if p not in (None, ""))
        return f"{where}: {self.message}" if where else self.message


def default_opa_bin() -> Path:
    """Where `scripts/install-opa.sh` puts the pinned OPA."""
    tools = os.environ.get("AGENTCTL_TOOLS_DIR") or str(Path.home() / ".cache/agentctl/tools")
    return Path(tools) / f"opa-v{OPA_VERSION}" / "opa"


def resolve_opa_bin(configured: str | None) -> str:
    """The OPA binary to run: `configured` if set, else the installed pinned one.

    Raises OpaUnavailableError when that file is not an executable.
    """
    candidate = Path(configured) if configured else default_opa_bin()
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        where = f"AGENTCTL_OPA_BIN={configured}" if configured else str(candidate)
        raise OpaUnavailableError(f"no OPA binary at {where}: {INSTALL_HINT}")
    return str(candidate)


def run_opa(opa_bin: str, args: list[str], cwd: Path, timeout: float) -> tuple[int, Any, str]:
    """Run `opa ARGS` in `cwd`; returns (exit code, decoded JSON of stdout or stderr, stderr).

    OPA writes its JSON errors to stderr for `check`, its results to stdout otherwise; the
    decoded value is None when neither holds JSON (a loading error is text).
    """
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [opa_bin, *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(cwd)},
        )
    except FileNotFoundError as exc:
        raise OpaUnavailableError(f"cannot run {opa_bin}: {INSTALL_HINT}") from exc
    except subprocess.TimeoutExpired as exc:
        raise OpaUnavailableError(f"opa {args[0]} timed out after {timeout:g}s") from exc
    for stream in (proc.stdout, proc.stderr):
        if stream.strip():
            try:
                return proc.returncode, json.loads(stream), proc.stderr
            except json.JSONDecodeError:
                continue
    return proc.returncode, None, proc.stderr or proc.stdout


def issues_from_errors(body: Any, *, fallback: str = "") -> list[PolicyIssue]:
    """OPA's `{"errors": [{code, message, location: {file, row, col}}]}` as issues."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list) or not errors:
        return [PolicyIssue("", None, None, fallback.strip()[:500] or "OPA failed", "opa_error")]
    issues = []
    for raw in errors:
        error: dict[str, Any] = raw if isinstance(raw, dict) else {}
        where = error.get("location")
        location: dict[str, Any] = where if isinstance(where, dict) else {}
        row, col = location.get("row"), location.get("col")
        issues.append(
            PolicyIssue(
                file=str(location.get("file") or "").removeprefix("./"),
                line=row if isinstance(row, int) and row > 0 else None,
                column=col if isinstance(col, int) and col > 0 else None,
                message=str(error.get("message", "")),
                code=str(error.get("code", "rego_error")),
            )
        )
    return issues


@lru_cache(maxsize=4)
def opa_builtin_names(opa_bin: str) -> frozenset[str]:
    """Every builtin the binary knows (`opa capabilities --current`)."""
    _, body, _ = run_opa(opa_bin, ["capabilities", "--current"], Path.cwd(), 30.0)
    builtins = body.get("builtins", []) if isinstance(body, dict) else []
    return frozenset(str(b.get("name")) for b in builtins if isinstance(b, dict))


@lru_cache(maxsize=1)
def shared_builtin_names() -> frozenset[str]:
    """The builtins of the committed capabilities file (those every engine implements)."""
    body = json.loads(CAPABILITIES.read_text(encoding="utf-8"))
    return frozenset(str(b["name"]) for b in body["builtins"])


def check(opa_bin: str, bundle_dir: Path, timeout: float) -> list[PolicyIssue]:
    """`opa check --strict` with the shared capabilities over a bundle directory (data too)."""
    args = ["check", "--strict", "--format", "json", "--max-errors", "-1"]
    args += ["--capabilities", str(CAPABILITIES), "-b", "."]
    code, body, stderr = run_opa(opa_bin, args, bundle_dir, timeout)
    if code == 0:
        return []
    return [_name_unsupported(i, opa_bin) for i in issues_from_errors(body, fallback=stderr)]


def _name_unsupported(issue: PolicyIssue, opa_bin: str) -> PolicyIssue:
    """An `undefined function` OPA has but the capabilities leave out names the builtin."""
    name = issue.message.removeprefix("undefined function ")
    if issue.code != "rego_type_error" or name == issue.message:
        return issue
    if name in opa_builtin_names(opa_bin) and name not in shared_builtin_names():
        message = (
            f"builtin {name} is not supported: not every policy engine implements it "
            "(see control_plane/policy/validation/capabilities.json)"
        )
        return PolicyIssue(issue.file, issue.line, issue.column, message, "unsupported_builtin")
    return issue


def packages(opa_bin: str, bundle_dir: Path, timeout: float) -> dict[str, str]:
    """Package path (`agents/authz`) to its first file, from `opa inspect --format json`."""
    code, body, stderr = run_opa(opa_bin, ["inspect", "--format", "json", "."], bundle_dir, timeout)
    namespaces = body.get("namespaces") if isinstance(body, dict) else None
    if code != 0 or not isinstance(namespaces, dict):
        raise OpaUnavailableError(f"opa inspect failed: {stderr.strip()[:300]}")
    found = {}
    for namespace, files in namespaces.items():
        rego = sorted(f for f in files if isinstance(f, str) and f.endswith(".rego"))
        if namespace.startswith("data.") and rego:
            found[namespace.removeprefix("data.").replace(".", "/")] = rego[0].removeprefix("./")
    return found


def evaluate_all(opa_bin: str, bundle_dir: Path, timeout: float) -> list[PolicyIssue]:
    """Evaluate the whole `data` document without input: conflicts OPA finds only then."""
    code, body, stderr = run_opa(
        opa_bin, ["eval", "--format", "json", "-b", ".", "data"], bundle_dir, timeout
    )
    return [] if code == 0 else issues_from_errors(body, fallback=stderr)


def run_tests(opa_bin: str, directory: Path, timeout: float) -> tuple[int, Any, str]:
    """`opa test --format json` over `directory`: (exit code, result list or None, stderr)."""
    return run_opa(opa_bin, ["test", "--format", "json", "."], directory, timeout)


WASM_MODULE: Final = "/policy.wasm"
# Beside a policy directory's committed module (`make wasm`): the `content_digest` of the
# sources it was compiled from, so that an edited copy never runs the original's module.
WASM_SOURCE_DIGEST: Final = "policy.wasm.source-digest"
NO_ENTRYPOINT: Final = "does not refer to a rule or policy decision"


def build_wasm(
    opa_bin: str, bundle_dir: Path, entrypoint: str, timeout: float
) -> tuple[bytes | None, list[PolicyIssue]]:
    """`opa build -t wasm -e ENTRYPOINT` over a bundle directory: (module, []) or (None, issues).

    The directory must hold only what the engine evaluates (no `*_test.rego`). The build is
    deterministic: the same modules give the same bytes. Issues carry OPA's message
    (`wasm_build_error` when OPA gives no structured error). A bundle whose package has no rule
    at the entrypoint has no module: (None, []); every engine denies it as undefined.
    """
    import tarfile

    out = bundle_dir.parent / (bundle_dir.name + ".wasm-bundle.tar.gz")
    args = ["build", "-t", "wasm", "-e", entrypoint.strip("/"), "-o", str(out), "."]
    code, body, stderr = run_opa(opa_bin, args, bundle_dir, timeout)
    if code != 0:
        # `opa build` reports this one in text only (no --format json for build errors).
        if body is None and NO_ENTRYPOINT in stderr:
            return None, []
        issues = issues_from_errors(body, fallback=stderr)
        return None, [
            issue
            if issue.code != "opa_error"
            else PolicyIssue(
                issue.file, issue.line, issue.column, issue.message, "wasm_build_error"
            )
            for issue in issues
        ]
    with tarfile.open(out, mode="r:gz") as archive:
        for member in archive:
            if member.name == WASM_MODULE or member.name == WASM_MODULE.lstrip("/"):
                handle = archive.extractfile(member)
                if handle is not None:
                    return handle.read(), []
    return None, [PolicyIssue("", None, None, "opa build wrote no policy.wasm", "wasm_build_error")]

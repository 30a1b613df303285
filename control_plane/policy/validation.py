"""Validate policy modules before a revision is stored, and run a directory's Rego tests.

`validate_modules` answers "would OPA 1.x and the embedded engine both accept this bundle?" with
a list of `PolicyIssue` (file, line, column, message); an empty list means valid. Layers:

1. Structure, always: module paths are relative `*.rego` paths without `..`, sources are text of
   bounded size, `data` is a JSON object that does not overlap a package.
2. With an OPA binary (authoritative): `opa check --format json` (Rego v1 is the default in OPA
   1.x: v0 syntax, unsafe variables, unknown functions, type errors, multiple defaults, parse
   errors, all with file and row), then `opa eval` of every package without input, which
   surfaces conflicts OPA only detects at evaluation (`p := 1` next to `p := 2`).
3. Always: the embedded engine must accept the bundle too. regopy parses every module and
   builds the runtime ones (not `*_test.rego`, which engines never load) in a child process,
   because some valid Rego makes regopy 1.5.2 abort the whole process; a crash becomes an
   `embedded_engine_crash` issue. A static check rejects calls to builtins OPA has but regopy
   lacks (`net.*`, `http.send`, ...) or crashes in (`time.weekday`, timezone forms).
4. Without an OPA binary (fallback, best effort): regopy's parse errors and build errors, an
   evaluation of every package with `{}` as input (reports conflicts regopy detects, without a
   location), plus the static checks of `_rego_scan`: v0 rule bodies, unknown functions,
   duplicate defaults, complete rules with two different constants, `:=` twice on one variable,
   and a heuristic for unsafe variables. The fallback does not run OPA's type checker: arity
   and type errors, input-dependent conflicts and unsafe variables the heuristic misses are only
   caught with the binary. Deploy the binary (`AGENTCTL_OPA_BIN`) where uploads are validated.

`run_policy_tests` runs `opa test DIR -v` when a binary is given, else evaluates every `test_*`
rule of the `*_test.rego` files with regopy (pass iff the rule is true), printing OPA-like lines.

Both functions block (subprocesses, compilation): call them from a worker thread.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import regopy

from control_plane.policy._opa_builtins import OPA_BUILTINS
from control_plane.policy._rego_scan import Finding, check_modules, scan_module
from control_plane.policy._regopy_worker import WorkerCrashError, run_in_worker
from control_plane.policy.engine import is_test_module
from control_plane.policy.source import read_policy_dir

MAX_MODULES: Final = 256
MAX_MODULE_BYTES: Final = 1024 * 1024
MAX_DATA_BYTES: Final = 8 * 1024 * 1024
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_REGO_ERROR = re.compile(r"\(error (\d+):")
_ERRORMSG = re.compile(r"\(errormsg (\d+):")
DATA_FILE: Final = "data.json"


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


@dataclass(slots=True)
class PolicyTestReport:
    exit_code: int
    output: str
    passed: int = 0
    failed: int = 0
    errored: int = 0
    engine: str = "embedded"
    results: list[tuple[str, str]] = field(default_factory=list)  # (test, PASS|FAIL|ERROR)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PolicyTestReport:
        report = cls(**raw)
        report.results = [(str(name), str(verdict)) for name, verdict in report.results]
        return report


# Builtins regopy has but that crash it: time.weekday corrupts memory (free(): invalid pointer)
# when greenlet was loaded into the process before regopy, which is the case in the server.
CRASHING_IN_REGOPY: Final = frozenset({"time.weekday"})


@lru_cache(maxsize=1)
def supported_builtins() -> frozenset[str]:
    """Builtins both OPA (pinned version) and regopy implement (and regopy survives)."""
    interpreter = regopy.Interpreter()
    # `print` is handled by regopy's compiler rather than registered as a builtin.
    return frozenset(
        n
        for n in OPA_BUILTINS
        if (n == "print" or interpreter.is_builtin(n))
        and n not in CRASHING_IN_REGOPY
        and n not in REFUSED_BUILTINS
    )


# Builtins no uploaded policy may use, whatever the engine: they reach the host (its
# environment and configuration, the network) rather than the decision's input and data.
REFUSED_BUILTINS: Final = frozenset({"opa.runtime", "http.send"})


def validate_modules(
    modules: Mapping[str, str],
    data: object,
    *,
    opa_bin: str | None = None,
    timeout: float = 60.0,
) -> list[PolicyIssue]:
    """Every problem that would make OPA or the embedded engine reject the bundle."""
    issues = _structure_issues(modules, data)
    if issues:
        return issues
    assert isinstance(data, dict)
    sources = dict(modules)
    if opa_bin:
        # Builtins the embedded engine lacks (http.send, net.*, opa.runtime ...) are refused
        # before OPA evaluates anything: an upload must never reach the network or the host.
        issues = _embedded_gap_issues(sources)
        if not issues:
            issues = _opa_check(sources, opa_bin, timeout)
        if not issues:
            issues = _opa_eval(sources, data, opa_bin, timeout)
        if not issues:
            issues = _regopy_issues(sources, data, evaluate=False, timeout=timeout)
    else:
        static = _static_issues(sources)
        compiled = _regopy_issues(sources, data, evaluate=not static, timeout=timeout)
        located = [i for i in compiled if i.line is not None]
        issues = static + located
        if not issues:
            issues = compiled
    return _dedupe(issues)


# --- structure --------------------------------------------------------------------------------


def _structure_issues(modules: Mapping[str, str], data: object) -> list[PolicyIssue]:
    issues: list[PolicyIssue] = []
    if not isinstance(modules, Mapping) or not modules:
        return [PolicyIssue("", None, None, "a bundle needs at least one module", "invalid_bundle")]
    if len(modules) > MAX_MODULES:
        issues.append(
            PolicyIssue("", None, None, f"more than {MAX_MODULES} modules", "invalid_bundle")
        )
    for path, source in modules.items():
        problem = _path_problem(path)
        if problem:
            issues.append(PolicyIssue(str(path), None, None, problem, "invalid_path"))
            continue
        if not isinstance(source, str):
            issues.append(
                PolicyIssue(path, None, None, "module source must be text", "invalid_module")
            )
        elif "\x00" in source:
            issues.append(PolicyIssue(path, None, None, "module contains NUL", "invalid_module"))
        elif len(source.encode("utf-8", "surrogatepass")) > MAX_MODULE_BYTES:
            issues.append(
                PolicyIssue(
                    path, None, None, f"module exceeds {MAX_MODULE_BYTES} bytes", "invalid_module"
                )
            )
        else:
            try:
                source.encode("utf-8")
            except UnicodeEncodeError:
                issues.append(
                    PolicyIssue(path, None, None, "module is not valid UTF-8", "invalid_module")
                )
    if not isinstance(data, dict):
        issues.append(
            PolicyIssue(DATA_FILE, None, None, "data must be a JSON object", "invalid_data")
        )
        return issues
    try:
        encoded = json.dumps(data, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        issues.append(
            PolicyIssue(DATA_FILE, None, None, f"data is not JSON: {exc}", "invalid_data")
        )
        return issues
    if len(encoded) > MAX_DATA_BYTES:
        issues.append(
            PolicyIssue(
                DATA_FILE, None, None, f"data exceeds {MAX_DATA_BYTES} bytes", "invalid_data"
            )
        )
    if not issues:
        issues.extend(_data_package_overlaps(modules, data))
    return issues


def _path_problem(path: object) -> str | None:
    if not isinstance(path, str) or not path:
        return "module path must be a non-empty string"
    if not path.endswith(".rego"):
        return "module path must end with .rego"
    if len(path) > 255 or path.startswith("/") or "\\" in path:
        return "module path must be a relative POSIX path of at most 255 characters"
    for segment in path.split("/"):
        if segment in ("", ".", "..") or not _PATH_SEGMENT.match(segment):
            return f"invalid path segment {segment!r}"
    return None


def _data_package_overlaps(modules: Mapping[str, str], data: dict[str, Any]) -> list[PolicyIssue]:
    """OPA refuses data that defines a value where a package's rules live."""
    issues: list[PolicyIssue] = []
    for path, source in modules.items():
        info = scan_module(path, source)
        if not info.package:
            continue
        node: Any = data
        for segment in info.package.split("."):
            if not isinstance(node, dict) or segment not in node:
                node = None
                break
            node = node[segment]
        if node is not None:
            issues.append(
                PolicyIssue(
                    DATA_FILE,
                    None,
                    None,
                    f"data.{info.package} overlaps package {info.package} of {path}",
                    "invalid_data",
                )
            )
    return issues


# --- OPA ----------------------------------------------------------------------------------------


def _write_tree(root: Path, modules: dict[str, str], data: dict[str, Any] | None) -> None:
    for path, source in modules.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source, encoding="utf-8")
    if data is not None:
        (root / DATA_FILE).write_text(json.dumps(data), encoding="utf-8")


def _run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - argv built here, no shell
        argv,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_opa_env(),
    )


def _opa_env() -> dict[str, str]:
    """Uploaded policy runs under `opa eval`/`opa test`: `opa.runtime().env` must not reveal the
    server's secrets (database URL, KEK, admin token), so OPA gets a minimal environment."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OPA_TELEMETRY": "false"}


def _opa_check(modules: dict[str, str], opa_bin: str, timeout: float) -> list[PolicyIssue]:
    with tempfile.TemporaryDirectory(prefix="agentctl-check-") as tmp:
        root = Path(tmp)
        _write_tree(root, modules, None)
        try:
            proc = _run(
                [opa_bin, "check", "--format", "json", "--max-errors", "-1", "."], root, timeout
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return [
                PolicyIssue("", None, None, f"opa check could not run: {exc}", "validator_error")
            ]
    if proc.returncode == 0:
        return []
    issues = _opa_errors(proc.stderr) or _opa_errors(proc.stdout)
    if issues:
        return issues
    text = (proc.stderr or proc.stdout).strip()[:500]
    return [PolicyIssue("", None, None, f"opa check failed: {text}", "validator_error")]


def _opa_eval(
    modules: dict[str, str], data: dict[str, Any], opa_bin: str, timeout: float
) -> list[PolicyIssue]:
    packages = sorted(
        {
            info.package
            for path, source in modules.items()
            if not is_test_module(path) and (info := scan_module(path, source)).package
        }
    )
    if not packages:
        return []
    # A comprehension per package: undefined documents give [] instead of stopping evaluation.
    refs = ["data" + "".join(f"[{json.dumps(s)}]" for s in p.split(".")) for p in packages]
    query = "[" + ", ".join(f"[x | x := {ref}]" for ref in refs) + "]"
    with tempfile.TemporaryDirectory(prefix="agentctl-eval-") as tmp:
        root = Path(tmp)
        _write_tree(root, modules, data)
        try:
            proc = _run([opa_bin, "eval", "--format", "json", "--data", ".", query], root, timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return [
                PolicyIssue("", None, None, f"opa eval could not run: {exc}", "validator_error")
            ]
    if proc.returncode == 0:
        return []
    return (
        _opa_errors(proc.stdout)
        or _opa_errors(proc.stderr)
        or [
            PolicyIssue(
                "", None, None, f"opa eval failed: {proc.stderr.strip()[:500]}", "validator_error"
            )
        ]
    )


def _opa_errors(text: str) -> list[PolicyIssue]:
    """Parse OPA's JSON error report (`{"errors": [{message, code, location{file,row,col}}]}`)."""
    start = text.find("{")
    if start < 0:
        return []
    try:
        body = json.loads(text[start:])
    except json.JSONDecodeError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    issues = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        location = error.get("location") if isinstance(error.get("location"), dict) else {}
        assert isinstance(location, dict)
        file = str(location.get("file") or "")
        file = file[2:] if file.startswith("./") else file
        row = location.get("row")
        col = location.get("col")
        issues.append(
            PolicyIssue(
                file=file,
                line=row if isinstance(row, int) and row > 0 else None,
                column=col if isinstance(col, int) and col > 0 else None,
                message=str(error.get("message", "")),
                code=str(error.get("code", "rego_error")),
            )
        )
    return issues


# --- embedded engine (regopy) ---------------------------------------------------------------


def _embedded_gap_issues(modules: dict[str, str]) -> list[PolicyIssue]:
    """Calls OPA accepts but regopy cannot evaluate (the bundle must run in both engines).

    OPA has judged everything else already, so only findings naming a builtin of the gap count.
    """
    gap = OPA_BUILTINS - supported_builtins()
    issues: list[PolicyIssue] = []
    for path, findings in check_modules(modules, OPA_BUILTINS - gap).items():
        for finding in findings:
            issue = _finding_issue(path, finding, gap)
            if issue.code == "unsupported_builtin":
                issues.append(issue)
    return issues


def _static_issues(modules: dict[str, str]) -> list[PolicyIssue]:
    findings = check_modules(modules, supported_builtins())
    issues: list[PolicyIssue] = []
    gap = OPA_BUILTINS - supported_builtins()
    for path, items in findings.items():
        for f in items:
            issues.append(_finding_issue(path, f, gap))
    return issues


def _finding_issue(path: str, finding: Finding, gap: frozenset[str]) -> PolicyIssue:
    name = finding.message.removeprefix("undefined function ")
    if finding.code == "rego_type_error" and name in CRASHING_IN_REGOPY:
        message = f"function {name} crashes the embedded engine (regopy 1.5.2); not supported"
        return PolicyIssue(path, finding.line, finding.col, message, "unsupported_builtin")
    if finding.code == "rego_type_error" and name in gap:
        message = f"function {name} is not supported by the embedded engine (regopy)"
        return PolicyIssue(path, finding.line, finding.col, message, "unsupported_builtin")
    return PolicyIssue(path, finding.line, finding.col, finding.message, finding.code)


def _regopy_issues(
    modules: dict[str, str], data: dict[str, Any], *, evaluate: bool, timeout: float
) -> list[PolicyIssue]:
    """regopy's verdict on the bundle, computed in a child process (regopy can crash)."""
    request = {"op": "compile", "modules": modules, "data": data, "evaluate": evaluate}
    try:
        raw = run_in_worker(request, timeout)
    except WorkerCrashError as exc:
        return [_crash_issue(modules, data, str(exc), timeout)]
    return [PolicyIssue(**item) for item in raw]


def _crash_issue(
    modules: dict[str, str], data: dict[str, Any], detail: str, timeout: float
) -> PolicyIssue:
    """Name the module that makes regopy crash, trying test modules one at a time."""
    runtime = {p: src for p, src in modules.items() if not is_test_module(p)}
    tests = [p for p in modules if is_test_module(p)]
    culprit = next(iter(modules)) if len(modules) == 1 else ""
    if not culprit and tests and len(tests) <= 16:
        if _crashes(runtime, data, timeout):
            culprit = next(iter(runtime)) if len(runtime) == 1 else ""
        else:
            culprit = next(
                (p for p in tests if _crashes({**runtime, p: modules[p]}, data, timeout)), ""
            )
    message = f"the embedded engine (regopy) crashed compiling this bundle: {detail}"
    return PolicyIssue(culprit, None, None, message, "embedded_engine_crash")


def _crashes(modules: dict[str, str], data: dict[str, Any], timeout: float) -> bool:
    if not modules:
        return False
    try:
        run_in_worker(
            {"op": "compile", "modules": modules, "data": data, "evaluate": False}, timeout
        )
    except WorkerCrashError:
        return True
    return False


def regopy_issues_in_process(
    modules: dict[str, str], data: dict[str, Any], *, evaluate: bool
) -> list[PolicyIssue]:
    """Compile (and optionally evaluate) with regopy in this process; the worker calls this.

    Every module is parsed, but only runtime modules are built: engines never load tests, and
    building a test module with many `with` overrides takes regopy seconds.
    """
    parser = regopy.Interpreter()
    parser.log_level = regopy.LogLevel.NONE
    for path, source in modules.items():
        try:
            parser.add_module(path, source)
        except regopy.RegoError as exc:
            return _regopy_error_issues(str(exc), modules, "rego_parse_error")
    interpreter = regopy.Interpreter()
    interpreter.log_level = regopy.LogLevel.NONE
    packages: dict[str, tuple[str, int]] = {}
    for path, source in modules.items():
        if is_test_module(path):
            continue
        interpreter.add_module(path, source)
        info = scan_module(path, source)
        if info.package:
            packages.setdefault(info.package, (path, info.package_line))
    entrypoints = [p.replace(".", "/") for p in sorted(packages)]
    if not entrypoints:
        return []
    try:
        interpreter.add_data_json(json.dumps(data))
        built = interpreter.build(None, entrypoints)
    except regopy.RegoError as exc:
        return _regopy_error_issues(str(exc), modules, "rego_compile_error")
    if not built.ok():
        return _regopy_error_issues(_node_text(built.node()), modules, "rego_compile_error")
    if not evaluate:
        return []
    issues: list[PolicyIssue] = []
    interpreter.set_input_term("{}")
    for package, (path, line) in sorted(packages.items()):
        entrypoint = package.replace(".", "/")
        try:
            output = interpreter.query_bundle_entrypoint(built, entrypoint)
        except json.JSONDecodeError:
            message = "evaluation with empty input failed (unknown function?)"
            issues.append(PolicyIssue(path, line, None, message, "rego_eval_error"))
            continue
        except regopy.RegoError as exc:
            issues.append(PolicyIssue(path, line, None, _messages(str(exc)), "rego_eval_error"))
            continue
        if not output.ok():
            message = f"package {package} fails with empty input: {_node_text(output.node())}"
            issues.append(PolicyIssue(path, line, None, _messages(message), "rego_eval_error"))
    return issues


def _node_text(node: Any) -> str:
    try:
        count = len(node)
        children = [node.at(i) for i in range(count)] if count else [node]
        return "\n".join(child.json() for child in children)
    except Exception:  # regopy's node API differs across releases; the text is best effort
        return "unknown error"


def _messages(sexpr: str) -> str:
    found = []
    for match in _ERRORMSG.finditer(sexpr):
        length = int(match.group(1))
        found.append(sexpr[match.end() : match.end() + length])
    if not found:
        return sexpr.strip()[:300]
    prefix = sexpr[: sexpr.find("(")].strip() if "(" in sexpr else ""
    return (prefix + " " if prefix and not prefix.startswith("(") else "") + "; ".join(found)


def _regopy_error_issues(sexpr: str, modules: dict[str, str], code: str) -> list[PolicyIssue]:
    """rego-cpp errors read `(error <len>:<file>|<byte offset>|<length> (errormsg <len>:<text>)`."""
    issues: list[PolicyIssue] = []
    blocks = re.split(r"(?=\(error[\s(])", sexpr)
    for block in blocks:
        msg = _ERRORMSG.search(block)
        if not block.startswith("(error") or not msg:
            continue
        text = block[msg.end() : msg.end() + int(msg.group(1))]
        file, line, col = "", None, None
        head = _REGO_ERROR.match(block)
        if head:
            length = int(head.group(1))
            name = block[head.end() : head.end() + length]
            rest = block[head.end() + length :]
            where = re.match(r"\|(\d+)\|(\d+)", rest)
            if name in modules:
                file = name
                if where:
                    line, col = _line_col(modules[name], int(where.group(1)))
        issues.append(PolicyIssue(file, line, col, f"embedded engine: {text}", code))
    if not issues:
        issues.append(PolicyIssue("", None, None, f"embedded engine: {sexpr.strip()[:300]}", code))
    return issues


def _line_col(source: str, byte_offset: int) -> tuple[int, int]:
    prefix = source.encode("utf-8")[:byte_offset].decode("utf-8", "replace")
    line = prefix.count("\n") + 1
    col = len(prefix) - (prefix.rfind("\n") + 1) + 1
    return line, col


def _dedupe(issues: list[PolicyIssue]) -> list[PolicyIssue]:
    seen: set[tuple[str, int | None, str]] = set()
    unique = []
    for issue in issues:
        key = (issue.file, issue.line, issue.message)
        if key not in seen:
            seen.add(key)
            unique.append(issue)
    return sorted(unique, key=lambda i: (i.file, i.line or 0, i.column or 0))


# --- tests ---------------------------------------------------------------------------------------


def run_policy_tests(
    directory: str | Path, opa_bin: str | None = None, *, timeout: float = 600.0
) -> PolicyTestReport:
    """Run the Rego tests of `directory`: `opa test -v` with a binary, else regopy."""
    if opa_bin:
        return _opa_test(Path(directory), opa_bin, timeout)
    try:
        raw = run_in_worker({"op": "test", "directory": str(Path(directory).resolve())}, timeout)
    except WorkerCrashError as exc:
        message = f"the embedded engine (regopy) crashed running the tests: {exc}\n"
        return PolicyTestReport(exit_code=1, output=message)
    return PolicyTestReport.from_dict(raw)


_OPA_COUNT = re.compile(r"^(PASS|FAIL|ERROR|SKIPPED): (\d+)/(\d+)$", re.MULTILINE)
_OPA_LINE = re.compile(r"^(data\.\S+): (PASS|FAIL|ERROR|SKIPPED)\b", re.MULTILINE)


def _opa_test(directory: Path, opa_bin: str, timeout: float) -> PolicyTestReport:
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [opa_bin, "test", str(directory), "-v"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env=_opa_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return PolicyTestReport(
            exit_code=1, output=f"opa test could not run: {exc}\n", engine="opa"
        )
    output = proc.stdout + proc.stderr
    counts = {kind: int(n) for kind, n, _ in _OPA_COUNT.findall(output)}
    return PolicyTestReport(
        exit_code=proc.returncode,
        output=output,
        passed=counts.get("PASS", 0),
        failed=counts.get("FAIL", 0),
        errored=counts.get("ERROR", 0),
        engine="opa",
        results=[(name, verdict) for name, verdict in _OPA_LINE.findall(output)],
    )


def regopy_tests_in_process(directory: Path) -> PolicyTestReport:
    """Run `test_*` rules with regopy in this process; the worker calls this."""
    try:
        source = read_policy_dir(directory)
    except (OSError, ValueError) as exc:
        return PolicyTestReport(exit_code=1, output=f"{exc}\n")
    tests: list[tuple[str, str, str]] = []  # (file, package, rule)
    for path, text in source.modules.items():
        if not is_test_module(path):
            continue
        info = scan_module(path, text)
        seen: set[str] = set()
        for statement in info.statements:
            name = statement.tokens[0].text
            if name.startswith("test_") and name not in seen and info.package:
                seen.add(name)
                tests.append((path, info.package, name))
    interpreter = regopy.Interpreter()
    interpreter.log_level = regopy.LogLevel.NONE
    entrypoints = [f"{pkg.replace('.', '/')}/{rule}" for _, pkg, rule in tests]
    try:
        for path, text in source.modules.items():
            interpreter.add_module(path, text)
        interpreter.add_data_json(json.dumps(source.data))
        built = interpreter.build(None, entrypoints) if entrypoints else None
    except regopy.RegoError as exc:
        issues = _regopy_error_issues(str(exc), source.modules, "rego_compile_error")
        text = "".join(f"{i.file}:{i.line}: {i.message}\n" for i in issues)
        return PolicyTestReport(exit_code=1, output=text)
    if built is not None and not built.ok():
        return PolicyTestReport(exit_code=1, output=_messages(_node_text(built.node())) + "\n")
    lines: list[str] = []
    report = PolicyTestReport(exit_code=0, output="")
    current_file = None
    for (path, package, rule), entrypoint in zip(tests, entrypoints, strict=True):
        if path != current_file:
            lines.append(f"{directory / path}:")
            current_file = path
        started = time.perf_counter()
        verdict, detail = _run_test(interpreter, built, entrypoint)
        elapsed_ms = (time.perf_counter() - started) * 1000
        name = f"data.{package}.{rule}"
        lines.append(f"{name}: {verdict} ({elapsed_ms:.3f}ms){detail}")
        report.results.append((name, verdict))
        if verdict == "PASS":
            report.passed += 1
        elif verdict == "FAIL":
            report.failed += 1
        else:
            report.errored += 1
    total = len(tests)
    lines.append("-" * 80)
    for label, count in (
        ("PASS", report.passed),
        ("FAIL", report.failed),
        ("ERROR", report.errored),
    ):
        if count:
            lines.append(f"{label}: {count}/{total}")
    if not total:
        lines.append("no tests found")
    report.exit_code = 0 if report.failed == 0 and report.errored == 0 else 2
    report.output = "\n".join(lines) + "\n"
    return report


def _run_test(interpreter: Any, built: Any, entrypoint: str) -> tuple[str, str]:
    try:
        output = interpreter.query_bundle_entrypoint(built, entrypoint)
    except json.JSONDecodeError:
        return "ERROR", " (evaluation error: unknown function?)"
    except regopy.RegoError as exc:
        return "ERROR", f" ({_messages(str(exc))})"
    if not output.ok():
        return "ERROR", f" ({_messages(_node_text(output.node()))})"
    results = output.results
    if results and results[0].expressions and results[0].expressions[0] is True:
        return "PASS", ""
    return "FAIL", ""

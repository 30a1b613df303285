"""Validate a bundle before a revision is stored, and run a directory's Rego tests, with OPA.

OPA is the one authority on whether Rego is valid (`validation.opa`). `validate_bundle` answers
"may this bundle be stored?" with a list of `PolicyIssue` (file, line, column, message, code);
an empty list means yes. In order, stopping at the first step that finds something:

1. Structure (`structure`): relative `*.rego` paths, bounded text sources, and a data document
   that is exactly what will be stored (no U+0000, no lone surrogates, no NaN, named by path).
2. `opa check --strict` with the capabilities file over the modules and `data.json` as one
   bundle: parse errors, Rego v0 syntax, unsafe variables, type errors, data that clashes with a
   rule path, and builtins outside those every engine implements (`unsupported_builtin`).
3. `opa eval` of `data` with no input: conflicts OPA only finds when evaluating (`p := 1` beside
   `p := 2`).
4. `opa build -t wasm -e agents/authz/decision` compiles the runtime modules to the WebAssembly
   module the wasm engine runs (`validate_and_compile` returns it); a build error is an issue
   carrying OPA's message. A bundle without the decision's package has no module.

Without an OPA binary nothing can be validated: `OpaUnavailableError` (the API answers 503).
Both functions block (subprocesses): call them from a worker thread.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from control_plane.observability import metrics
from control_plane.policy.engines.base import DEFAULT_ENTRYPOINT
from control_plane.policy.validation import opa
from control_plane.policy.validation.opa import (
    INSTALL_HINT,
    OpaUnavailableError,
    PolicyIssue,
    resolve_opa_bin,
)
from control_plane.policy.validation.structure import DATA_FILE, structure_issues

__all__ = [
    "INSTALL_HINT",
    "OpaUnavailableError",
    "PolicyIssue",
    "PolicyTestReport",
    "resolve_opa_bin",
    "run_policy_tests",
    "validate_and_compile",
    "validate_bundle",
]


def validate_bundle(
    modules: Mapping[str, str], data: object, *, opa_bin: str | None, timeout: float = 60.0
) -> list[PolicyIssue]:
    """Every problem that makes OPA or an engine reject the bundle (see module doc).

    Raises OpaUnavailableError when no OPA binary can be run.
    """
    return validate_and_compile(modules, data, opa_bin=opa_bin, timeout=timeout)[0]


def validate_and_compile(
    modules: Mapping[str, str],
    data: object,
    *,
    opa_bin: str | None,
    entrypoint: str = DEFAULT_ENTRYPOINT,
    timeout: float = 60.0,
) -> tuple[list[PolicyIssue], bytes | None]:
    """(issues, wasm module): the module is None when there are issues or no decision package.

    Raises OpaUnavailableError when no OPA binary can be run.
    """
    issues = structure_issues(modules, data)
    if issues:
        return issues, None
    binary = resolve_opa_bin(opa_bin)
    assert isinstance(data, dict)
    runtime = {p: s for p, s in modules.items() if not p.endswith("_test.rego")}
    with tempfile.TemporaryDirectory(prefix="agentctl-policy-") as tmp:
        everything, runtime_dir = Path(tmp, "all"), Path(tmp, "runtime")
        _write_bundle(everything, modules, data)
        issues = opa.check(binary, everything, timeout)
        if issues:
            return _sorted(issues), None
        _write_bundle(runtime_dir, runtime, data)
        issues = opa.evaluate_all(binary, runtime_dir, timeout)
        if issues:
            return _sorted(issues), None
        packages = opa.packages(binary, runtime_dir, timeout)
        decision_package = entrypoint.strip("/").rpartition("/")[0]
        if decision_package not in packages:
            return [], None
        wasm, issues = opa.build_wasm(binary, runtime_dir, entrypoint, timeout)
        metrics.observe_bundle_build("wasm", ok=wasm is not None and not issues)
        return _sorted(issues), wasm


def _write_bundle(root: Path, modules: Mapping[str, str], data: dict[str, Any]) -> None:
    for path, source in modules.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source, encoding="utf-8")
    root.mkdir(parents=True, exist_ok=True)
    (root / DATA_FILE).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _sorted(issues: list[PolicyIssue]) -> list[PolicyIssue]:
    return sorted(issues, key=lambda i: (i.file, i.line or 0, i.column or 0))


# --- Rego tests ----------------------------------------------------------------------------------


@dataclass(slots=True)
class PolicyTestReport:
    """The outcome of `opa test`: exit code (0 all passed), OPA-like text, counts, results."""

    exit_code: int
    output: str
    passed: int = 0
    failed: int = 0
    errored: int = 0
    engine: str = "opa"
    results: list[tuple[str, str]] = field(default_factory=list)  # (test, PASS|FAIL|ERROR)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_policy_tests(
    directory: str | Path, opa_bin: str | None = None, *, timeout: float = 600.0
) -> PolicyTestReport:
    """`opa check --strict` (shared capabilities) then `opa test --format json` over `directory`.

    Raises OpaUnavailableError when no OPA binary can be run.
    """
    binary = resolve_opa_bin(opa_bin)
    root = Path(directory).resolve()
    issues = opa.check(binary, root, timeout)
    if issues:
        text = "".join(f"{issue.text()} ({issue.code})\n" for issue in _sorted(issues))
        return PolicyTestReport(exit_code=1, output=text)
    code, body, stderr = opa.run_tests(binary, root, timeout)
    if not isinstance(body, list):
        return PolicyTestReport(exit_code=code or 1, output=stderr or "opa test failed\n")
    report = PolicyTestReport(exit_code=code, output="")
    lines: list[str] = []
    for result in sorted(body, key=_result_order):
        name = f"{result.get('package', '')}.{result.get('name', '')}"
        verdict = "ERROR" if result.get("error") else "FAIL" if result.get("fail") else "PASS"
        if result.get("skip"):
            verdict = "SKIPPED"
        millis = float(result.get("duration") or 0) / 1e6
        location = result.get("location") or {}
        where = f"{location.get('file', '')}:{location.get('row', '')}"
        detail = f": {result['error'].get('message', '')}" if result.get("error") else ""
        lines.append(f"{name}: {verdict} ({millis:.3f}ms) {where}{detail}")
        report.results.append((name, verdict))
    report.passed = sum(v == "PASS" for _, v in report.results)
    report.failed = sum(v == "FAIL" for _, v in report.results)
    report.errored = sum(v == "ERROR" for _, v in report.results)
    lines.append("-" * 80)
    for label, count in (("PASS", report.passed), ("FAIL", report.failed)):
        if count:
            lines.append(f"{label}: {count}/{len(report.results)}")
    if report.errored:
        lines.append(f"ERROR: {report.errored}/{len(report.results)}")
    if not report.results:
        lines.append("no tests found")
    report.output = "\n".join(lines) + "\n"
    return report


def _result_order(result: Any) -> tuple[str, int]:
    location = result.get("location") or {}
    return str(location.get("file", "")), int(location.get("row") or 0)

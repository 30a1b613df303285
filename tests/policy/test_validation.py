"""Validation before a revision is stored, with the OPA binary and with the regopy fallback.

Every kind of policy OPA 1.x rejects is checked in both modes. Where the fallback cannot see a
problem (type errors such as an arity mismatch), the test pins down what it does instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from control_plane.policy.bundles import read_policy_dir
from control_plane.policy.validation import PolicyIssue, run_policy_tests, validate_modules
from tests.policy.helpers import POLICIES

PATH = "bundle/rules.rego"

# name: (source, expected code, expected line); caught by OPA and by the fallback.
REJECTED = {
    "v0_rule_body": ("package t\n\nallow { input.a == 1 }\n", "rego_parse_error", 3),
    "v0_partial_set": ("package t\n\ndeny[x] {\n\tx := 1\n}\n", "rego_parse_error", 3),
    "v0_else": (
        "package t\n\np := 1 if input.a\n\nelse := 2 {\n\tinput.b\n}\n",
        "rego_parse_error",
        5,
    ),
    "conflicting_complete_rules": ("package t\n\np := 1\n\np := 2\n", "eval_conflict_error", 5),
    "unsafe_variable": ("package t\n\nq if {\n\tx := y\n}\n", "rego_unsafe_var_error", 4),
    "unsafe_in_head": ("package t\n\np := z if input.a\n", "rego_unsafe_var_error", 3),
    "unknown_function": ("package t\n\nr if foo.bar(1)\n", "rego_type_error", 3),
    "unknown_local_function": ("package t\n\nr if helper(1)\n", "rego_type_error", 3),
    "parse_error": ("package t\n\na := 1 +\n\nb := 2\n", "rego_parse_error", None),
    "reassigned_variable": (
        "package t\n\np if {\n\tx := 1\n\tx := 2\n}\n",
        "rego_compile_error",
        5,
    ),
    "multiple_defaults": (
        "package t\n\ndefault p := 1\n\ndefault p := 2\n",
        "rego_type_error",
        None,
    ),
    "missing_in_embedded_engine": (
        'package t\n\np := net.cidr_contains("10.0.0.0/8", input.ip)\n',
        "unsupported_builtin",
        3,
    ),
    "crashes_embedded_engine": (
        "package t\n\np := time.weekday(input.t)\n",
        "unsupported_builtin",
        3,
    ),
    "timezone_form": (
        'package t\n\np := time.clock([input.t, "Europe/Paris"])\n',
        "unsupported_builtin",
        3,
    ),
}

# What the fallback does where it cannot match OPA (documented gaps).
FALLBACK_GAPS = {
    # OPA's type checker: no Python equivalent; regopy evaluates `count` with two arguments
    # without complaint when input.x is undefined.
    "arity_mismatch": "package t\n\np if count(input.x, 1) > 2\n",
}

# Conflicts that only show for some inputs: neither OPA's compiler nor validation rejects them;
# at evaluation both engines fail closed (see the engine tests).
ACCEPTED_BY_BOTH = {
    "input_dependent_conflict": "package t\n\np := 1 if input.a\n\np := 2 if input.b\n",
}


def modes() -> list[object]:
    return [
        pytest.param(None, id="fallback"),
        pytest.param("opa", id="opa", marks=pytest.mark.opa),
    ]


@pytest.fixture(params=modes())
def opa_mode(request: pytest.FixtureRequest) -> str | None:
    if request.param is None:
        return None
    found: str = request.getfixturevalue("opa_bin")
    return found


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_rejected_with_file_and_line(opa_mode: str | None, case: str) -> None:
    source, code, line = REJECTED[case]
    issues = validate_modules({PATH: source}, {}, opa_bin=opa_mode)
    assert issues, f"{case} accepted"
    located = [i for i in issues if i.file == PATH and i.line is not None]
    assert located, issues
    if code is not None:
        assert code in {i.code for i in issues}, issues
    if line is not None:
        assert line in {i.line for i in located}, issues


@pytest.mark.parametrize("case", sorted(FALLBACK_GAPS))
def test_fallback_gaps(opa_mode: str | None, case: str) -> None:
    issues = validate_modules({PATH: FALLBACK_GAPS[case]}, {}, opa_bin=opa_mode)
    if opa_mode:
        assert [(i.file, i.line, i.code) for i in issues] == [(PATH, 3, "rego_type_error")]
    else:
        assert issues == []  # the fallback cannot see it: only OPA's type checker does


@pytest.mark.parametrize("case", sorted(ACCEPTED_BY_BOTH))
def test_input_dependent_conflicts_are_accepted(opa_mode: str | None, case: str) -> None:
    assert validate_modules({PATH: ACCEPTED_BY_BOTH[case]}, {}, opa_bin=opa_mode) == []


def test_shipped_policies_are_valid(opa_mode: str | None) -> None:
    source = read_policy_dir(POLICIES)
    assert validate_modules(source.modules, source.data, opa_bin=opa_mode) == []


def test_issue_names_the_right_file_among_several(opa_mode: str | None) -> None:
    modules = {
        "a/good.rego": "package a\n\nok := true\n",
        "b/bad.rego": "package b\n\n\n\nallow {\n\ttrue\n}\n",
    }
    issues = validate_modules(modules, {}, opa_bin=opa_mode)
    assert {(i.file, i.line) for i in issues} == {("b/bad.rego", 5)}


def test_embedded_engine_crash_is_an_issue_not_a_crash(opa_mode: str | None) -> None:
    """regopy 1.5.2 aborts compiling `with input as {...}` over a builtin call on input."""
    modules = {
        "a.rego": "package a\n\nr if is_object(input.agent)\n",
        "b.rego": 'package b\n\nt if {\n\tdata.a.r with input as {"agent": {}}\n}\n',
    }
    issues = validate_modules(modules, {}, opa_bin=opa_mode)
    assert [i.code for i in issues] == ["embedded_engine_crash"]
    assert "SIGABRT" in issues[0].message


@pytest.mark.parametrize(
    ("modules", "data", "code"),
    [
        ({}, {}, "invalid_bundle"),
        ({"../escape.rego": "package x\n"}, {}, "invalid_path"),
        ({"/abs.rego": "package x\n"}, {}, "invalid_path"),
        ({"a/./b.rego": "package x\n"}, {}, "invalid_path"),
        ({"policy.txt": "package x\n"}, {}, "invalid_path"),
        ({"we ird.rego": "package x\n"}, {}, "invalid_path"),
        ({"a.rego": "package x\n\x00"}, {}, "invalid_module"),
        ({"a.rego": "package x\n#" + "x" * (1024 * 1024)}, {}, "invalid_module"),
        ({"a.rego": "package x\n"}, [1], "invalid_data"),
        ({"a.rego": "package x\n"}, {"n": float("nan")}, "invalid_data"),
        ({"a.rego": "package agents.authz\n"}, {"agents": {"authz": {"x": 1}}}, "invalid_data"),
    ],
)
def test_structure(modules: dict[str, str], data: object, code: str) -> None:
    issues = validate_modules(modules, data)
    assert code in {i.code for i in issues}, issues


def test_issue_serialises() -> None:
    issue = PolicyIssue("a.rego", 3, None, "boom", "rego_parse_error")
    assert issue.as_dict() == {
        "file": "a.rego",
        "line": 3,
        "column": None,
        "message": "boom",
        "code": "rego_parse_error",
    }


# --- Rego tests of a directory ---------------------------------------------------------------


def test_policy_tests_pass_under_both_engines(opa_mode: str | None) -> None:
    report = run_policy_tests(POLICIES, opa_mode)
    assert report.exit_code == 0, report.output
    assert report.failed == report.errored == 0
    assert report.passed >= 60
    assert report.passed == len(report.results)
    assert all(verdict == "PASS" for _, verdict in report.results)


@pytest.mark.opa
def test_both_runners_run_the_same_tests(opa_bin: str) -> None:
    embedded = run_policy_tests(POLICIES)
    opa = run_policy_tests(POLICIES, opa_bin)
    assert sorted(embedded.results) == sorted(opa.results)
    assert (embedded.engine, opa.engine) == ("embedded", "opa")


@pytest.mark.parametrize(
    ("original", "mutant"),
    [
        # Approval at the threshold instead of above it.
        (
            "resource_fields.amount > autonomy.approval_above_amount",
            "resource_fields.amount >= autonomy.approval_above_amount",
        ),
        # Wildcard grants without the dot boundary.
        ('endswith(grant, ".*")', 'endswith(grant, "*")'),
        # Per-agent grants looked up by name in any domain (same-named agents inherit them).
        (
            "cfg.grants.agents[agent.domain][agent.name]",
            "cfg.grants.agents[_][agent.name]",
        ),
        # Suspended agents let through.
        ('agent_active if agent.status == "active"', "agent_active if agent.status"),
    ],
)
def test_rego_tests_catch_a_broken_policy(
    opa_mode: str | None, tmp_path: Path, original: str, mutant: str
) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    policy = copy / "agents" / "authz.rego"
    text = policy.read_text()
    assert original in text
    policy.write_text(text.replace(original, mutant))
    report = run_policy_tests(copy, opa_mode)
    assert report.exit_code != 0
    assert report.failed >= 1, report.output


def test_runner_reports_compile_errors(tmp_path: Path) -> None:
    (tmp_path / "x.rego").write_text("package x\n\np := 1 +\n")
    report = run_policy_tests(tmp_path)
    assert report.exit_code == 1
    assert "x.rego:3" in report.output


def test_runner_without_tests(tmp_path: Path) -> None:
    (tmp_path / "x.rego").write_text("package x\n\np := 1\n")
    report = run_policy_tests(tmp_path)
    assert (report.exit_code, report.passed) == (0, 0)
    assert "no tests found" in report.output

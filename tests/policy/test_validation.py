"""Validation before a revision is stored: OPA (with the shared capabilities) is the judge.

Every kind of policy OPA 1.x rejects is refused with its file and line; builtins outside the
capabilities file are refused by name; without an OPA binary nothing validates.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from control_plane.policy.bundles import read_policy_dir
from control_plane.policy.validation import (
    OpaUnavailableError,
    PolicyIssue,
    run_policy_tests,
    validate_bundle,
)
from tests.policy.helpers import POLICIES

PATH = "bundle/rules.rego"

# name: (source, expected code, expected line).
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
    "arity_mismatch": ("package t\n\np if count(input.x, 1) > 2\n", "rego_type_error", 3),
    "host_builtin_in_wasm": (
        "package t\n\np := net.cidr_expand(input.cidr)\n",
        "unsupported_builtin",
        3,
    ),
    "weekday_host_builtin": (
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

# Conflicts that only show for some inputs: neither OPA's compiler nor validation rejects them;
# at evaluation both engines fail closed (see the engine tests).
ACCEPTED = {
    "input_dependent_conflict": "package t\n\np := 1 if input.a\n\np := 2 if input.b\n",
}

pytestmark = pytest.mark.opa


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_rejected_with_file_and_line(opa_bin: str, case: str) -> None:
    source, code, line = REJECTED[case]
    issues = validate_bundle({PATH: source}, {}, opa_bin=opa_bin)
    assert issues, f"{case} accepted"
    located = [i for i in issues if i.file == PATH and i.line is not None]
    assert located, issues
    if code is not None:
        assert code in {i.code for i in issues}, issues
    if line is not None:
        assert line in {i.line for i in located}, issues


@pytest.mark.parametrize(
    ("case", "builtin"),
    [
        ("host_builtin_in_wasm", "net.cidr_expand"),
        ("weekday_host_builtin", "time.weekday"),
        ("timezone_form", "time.clock"),
    ],
)
def test_unsupported_builtin_is_named(opa_bin: str, case: str, builtin: str) -> None:
    issues = validate_bundle({PATH: REJECTED[case][0]}, {}, opa_bin=opa_bin)
    assert [(i.file, i.line, i.code) for i in issues] == [(PATH, 3, "unsupported_builtin")]
    assert builtin in issues[0].message


def test_unknown_function_is_not_called_unsupported(opa_bin: str) -> None:
    issues = validate_bundle({PATH: "package t\n\nr if foo.bar(1)\n"}, {}, opa_bin=opa_bin)
    assert [i.code for i in issues] == ["rego_type_error"]
    assert "undefined function foo.bar" in issues[0].message


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_input_dependent_conflicts_are_accepted(opa_bin: str, case: str) -> None:
    assert validate_bundle({PATH: ACCEPTED[case]}, {}, opa_bin=opa_bin) == []


def test_without_opa_nothing_validates(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-opa")
    with pytest.raises(OpaUnavailableError, match="make opa"):
        validate_bundle({PATH: "package t\n\np := 1\n"}, {}, opa_bin=missing)
    with pytest.raises(OpaUnavailableError, match=r"install-opa\.sh"):
        run_policy_tests(POLICIES, missing)


def test_shipped_policies_are_valid(opa_bin: str) -> None:
    source = read_policy_dir(POLICIES)
    assert validate_bundle(source.modules, source.data, opa_bin=opa_bin) == []


def test_issue_names_the_right_file_among_several(opa_bin: str) -> None:
    modules = {
        "a/good.rego": "package a\n\nok := true\n",
        "b/bad.rego": "package b\n\n\n\nallow {\n\ttrue\n}\n",
    }
    issues = validate_bundle(modules, {}, opa_bin=opa_bin)
    assert {(i.file, i.line) for i in issues} == {("b/bad.rego", 5)}


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
        ({"a.rego": "package x\n"}, {"b": {"x\u0000": 1}}, "invalid_data"),
        ({"a.rego": "package x\n"}, {"b": ["x\ud800"]}, "invalid_data"),
    ],
)
def test_structure(modules: dict[str, str], data: object, code: str) -> None:
    issues = validate_bundle(modules, data, opa_bin=None)
    assert code in {i.code for i in issues}, issues


def test_data_that_cannot_be_stored_exactly_is_named_by_path() -> None:
    data = {"b": {"x\u0000": 1, "x\ufffd": 2}, "ok": ["fine", "y\udc00"]}
    issues = validate_bundle({"a.rego": "package x\n"}, data, opa_bin=None)
    assert {(i.file, i.code) for i in issues} == {("data.json", "invalid_data")}
    messages = sorted(i.message for i in issues)
    assert messages == [
        'data at "/b/x\\u0000": object key contains U+0000 (NUL), which cannot be stored',
        'data at "/ok/1": string contains a lone surrogate, which is not Unicode text',
    ]


# OPA's own rule on data beside rules (issue 8, fault 4): a value where a rule lives is refused,
# data below a package that no rule claims is accepted.
def test_data_clashing_with_a_rule_is_refused(opa_bin: str) -> None:
    modules = {"agents/authz.rego": "package agents.authz\n\nallow := true\n"}
    issues = validate_bundle(modules, {"agents": 5}, opa_bin=opa_bin)
    assert [(i.file, i.line, i.code) for i in issues] == [
        ("agents/authz.rego", 3, "rego_compile_error")
    ]
    assert "conflicting rule for data path agents/authz/allow" in issues[0].message


def test_data_beside_rules_of_a_package_is_accepted(opa_bin: str) -> None:
    modules = {"agents/authz.rego": "package agents.authz\n\nallow := true\n"}
    assert validate_bundle(modules, {"agents": {"authz": {"x": 1}}}, opa_bin=opa_bin) == []


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


def test_policy_tests_pass(opa_bin: str) -> None:
    report = run_policy_tests(POLICIES, opa_bin)
    assert report.exit_code == 0, report.output
    assert report.failed == report.errored == 0
    assert report.passed >= 60
    assert report.passed == len(report.results)
    assert all(verdict == "PASS" for _, verdict in report.results)


@pytest.mark.parametrize(
    ("original", "mutant"),
    [
        # Approval at the threshold instead of above it.
        ("\tamount > t\n", "\tamount >= t\n"),
        # A claimed classification allowed to lower the declared one.
        ("max(declared_ranks | claimed_ranks)", "min(declared_ranks | claimed_ranks)"),
        # Read-only decided by spelling again.
        ('read_action if action_kind == "read"', 'read_action if endswith(action, "read")'),
        # A requested wildcard matching a wildcard grant.
        ('\tgrant == act\n\tnot contains(act, "*")\n', "\tgrant == act\n"),
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
    opa_bin: str, tmp_path: Path, original: str, mutant: str
) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    policy = copy / "agents" / "authz.rego"
    text = policy.read_text()
    assert original in text
    policy.write_text(text.replace(original, mutant))
    report = run_policy_tests(copy, opa_bin)
    assert report.exit_code != 0
    assert report.failed >= 1, report.output


def test_runner_reports_compile_errors(opa_bin: str, tmp_path: Path) -> None:
    (tmp_path / "x.rego").write_text("package x\n\np := 1 +\n")
    report = run_policy_tests(tmp_path, opa_bin)
    assert report.exit_code == 1
    assert "x.rego:4: unexpected eof token" in report.output  # OPA reports the end of file


def test_runner_without_tests(opa_bin: str, tmp_path: Path) -> None:
    (tmp_path / "x.rego").write_text("package x\n\np := 1\n")
    report = run_policy_tests(tmp_path, opa_bin)
    assert (report.exit_code, report.passed) == (0, 0)
    assert "no tests found" in report.output


def test_runner_refuses_builtins_outside_the_capabilities(opa_bin: str, tmp_path: Path) -> None:
    (tmp_path / "x.rego").write_text('package x\n\np := net.cidr_expand("10.0.0.0/30")\n')
    report = run_policy_tests(tmp_path, opa_bin)
    assert report.exit_code == 1
    assert "x.rego:3:" in report.output
    assert "net.cidr_expand" in report.output


def test_runner_reports_failures_and_errors(opa_bin: str, tmp_path: Path) -> None:
    (tmp_path / "x.rego").write_text("package x\n\np := 1\n")
    (tmp_path / "x_test.rego").write_text(
        "package x_test\n\nimport data.x\n\ntest_ok if x.p == 1\n\ntest_bad if x.p == 2\n"
    )
    report = run_policy_tests(tmp_path, opa_bin)
    assert report.exit_code == 2
    assert sorted(report.results) == [
        ("data.x_test.test_bad", "FAIL"),
        ("data.x_test.test_ok", "PASS"),
    ]
    assert (report.passed, report.failed) == (1, 1)
    assert "data.x_test.test_bad: FAIL" in report.output

"""The fallback's static checks must not reject valid Rego v1.

A corpus of constructs OPA accepts (verified against the binary when it is available) goes
through `validate_modules` without an OPA binary and must come back clean; then single-line
edits turn it invalid and the fallback must notice.
"""

from __future__ import annotations

import pytest

from control_plane.policy._rego_scan import split_statements, tokenize
from control_plane.policy.validation import validate_modules

HELPERS = """package lib.helpers

is_ok(x) if x.ok

double(n) := n * 2
"""

VALID = r"""package ex

import data.lib.helpers as h
import data.lib.helpers.double
import input.agent
import rego.v1

default allow := false

allow if {
	some role in input.roles
	role == "admin"
}

allow if input.user == "root"

deny contains msg if {
	some i
	input.items[i].bad
	msg := sprintf("item %d is bad", [i])
}

names := {n | some n in input.names}

pairs := {k: v | some k; v := input.obj[k]}

arr := [y | some x in numbers.range(1, 3); y := x * 2]

f(x) := y if {
	y := x + 1
}

g(x, y) := z if {
	[a, b] := [x, y]
	z := a + b
}

unused_param(_, y) := y

every_ok if {
	every item in input.items {
		item.ok
	}
}

every_kv if {
	every k, v in input.obj {
		is_string(k)
		v != null
	}
}

obj := {"a": 1, "b": [1, 2, {"c": true}], "d": {"e": {}}}

set_literal := {1, 2, 3}

nested if {
	x := {"k": input.v}
	x.k == 1
}

ref_iter contains key if {
	input.obj[key] == true
}

unified if {
	[_, second] = input.list
	second > 1
}

obj_pattern if {
	{"name": n} := input.person
	n == "x"
}

with_override if {
	allow with input as {"user": "root"}
}

else_rule := "a" if {
	input.x == 1
} else := "b" if {
	input.x == 2
} else := "c"

multi_line := value if {
	value := object.get(
		input,
		"key",
		"default",
	)
}

raw := `a\b{`

brace_in_string := "{ not a body }"

a.b.c := 1

uses_alias if h.is_ok(input)

uses_import := double(2)

uses_data := data.lib.helpers.double(3)

uses_input_alias if agent.name == "x"

negation := [x | some x in input.xs; not x == 1]

printing if {
	print("value", input.x)
	true
}

chained if input.a == 1
	with input.a as 1

comparison_object if input.x == {"a": 1}

membership if "admin" in input.roles

short_body contains "x" if true

partial_object[k] := v if {
	some k, v in input.obj
}

local_function_call := f(1)

count_of := count(input.list)

time_checks if {
	ns := time.parse_rfc3339_ns("2024-01-01T00:00:00+00:00")
	time.clock(ns)[0] == 0
}
"""


def check(modules: dict[str, str]) -> list[object]:
    return list(validate_modules(modules, {}, opa_bin=None))


def test_valid_corpus_is_clean_in_fallback() -> None:
    assert check({"ex.rego": VALID, "lib/helpers.rego": HELPERS}) == []


@pytest.mark.opa
def test_valid_corpus_is_valid_for_opa(opa_bin: str) -> None:
    issues = validate_modules({"ex.rego": VALID, "lib/helpers.rego": HELPERS}, {}, opa_bin=opa_bin)
    assert issues == []


@pytest.mark.parametrize(
    ("original", "broken", "code"),
    [
        ("allow if input.user", "allow if udser", "rego_unsafe_var_error"),
        ("y := x + 1", "y := x + w", "rego_unsafe_var_error"),
        ("msg := sprintf(", "msg := sprintf_(", "rego_type_error"),
        ("uses_alias if h.is_ok(input)", "uses_alias if h.is_not(input)", "rego_type_error"),
        ("every_ok if {", "every_ok {", "rego_parse_error"),
        ("deny contains msg if {", "deny[msg] {", "rego_parse_error"),
        ('} else := "b" if {', '} else := "b" {', "rego_parse_error"),
        ('x := {"k": input.v}', 'x := {"k": input.v}\n\tx := 2', "rego_compile_error"),
        ("raw := `a\\b{`", "raw := `a\\b{`\n\nraw := 2", "eval_conflict_error"),
        ("count_of := count(input.list)", "count_of := http.send({})", "unsupported_builtin"),
    ],
)
def test_single_edits_are_caught(original: str, broken: str, code: str) -> None:
    assert original in VALID
    issues = validate_modules(
        {"ex.rego": VALID.replace(original, broken, 1), "lib/helpers.rego": HELPERS}, {}
    )
    assert code in {i.code for i in issues}, issues
    line = VALID.replace(original, broken, 1).split(broken)[0].count("\n") + 1
    assert any(i.file == "ex.rego" and i.line is not None and i.line >= line for i in issues)


def test_statements_follow_rego_layout() -> None:
    statements = split_statements(tokenize(VALID))
    heads = [s.tokens[0].text for s in statements]
    assert heads[:3] == ["package", "import", "import"]
    assert heads.count("allow") == 2
    assert "else" not in heads  # else clauses belong to their rule
    assert "with" not in heads  # a continued body belongs to its rule

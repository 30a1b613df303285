"""Best-effort static checks on Rego source, for validation without an OPA binary.

regopy (the embedded engine) accepts Rego v0 syntax, evaluates unsafe variables and re-assigned
variables instead of rejecting them, and only notices an unknown function when it is called.
OPA 1.x rejects all of these at compile time. When no OPA binary is available, these checks
close part of that gap with a tokenizer and a statement splitter, not a full parser:

- v0 rule bodies: a `{` body at the top of a rule that no `if` precedes, and `p[x] {` partial set
  rules without `contains` (OPA's own messages);
- calls of functions that are neither builtins both engines support nor defined in the modules;
- duplicate `default` rules and complete rules assigned two different constants;
- a body variable assigned twice with `:=`;
- unsafe variables: a variable that never appears in a binding position (`x :=`, `x =`, `= x`,
  `some x`, `every x`, `ref[x]`, destructuring, function parameters) and is not a rule, import
  or function name. Heuristic: it can miss unsafe variables (say, bound only in another clause).

What it cannot see: conflicts that depend on input, type errors (arity, operand types),
recursion, and anything else that needs OPA's type checker. Use `opa check` for those.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

KEYWORDS: Final = frozenset(
    {
        "as",
        "contains",
        "default",
        "else",
        "every",
        "false",
        "if",
        "import",
        "in",
        "not",
        "null",
        "package",
        "some",
        "true",
        "with",
    }
)

# A statement continues on the next line after these tokens (an expression is unfinished).
_CONTINUES_AFTER: Final = frozenset(
    {
        ":=",
        "=",
        "==",
        "!=",
        "<",
        ">",
        "<=",
        ">=",
        "+",
        "-",
        "*",
        "/",
        "%",
        "&",
        "|",
        ",",
        ".",
        ":",
        "if",
        "else",
        "contains",
        "in",
        "as",
        "with",
        "not",
        "some",
        "every",
        "default",
    }
)
# ... and a line starting with these tokens belongs to the previous statement.
_CONTINUES_BEFORE: Final = frozenset(
    {
        "else",
        "}",
        "]",
        ")",
        ".",
        ",",
        "|",
        "&",
        "+",
        "*",
        "/",
        "%",
        "==",
        "!=",
        "<",
        ">",
        "<=",
        ">=",
        ":=",
        "=",
        "in",
        "with",
        "as",
    }
)

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\f\v]+)
  | (?P<nl>\n)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<badstring>"[^\n]*)
  | (?P<raw>`[^`]*`)
  | (?P<number>[0-9][0-9.eE+\-]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>:=|==|!=|<=|>=|[=<>+\-*/%&|.,;:()\[\]{}$])
  | (?P<other>.)
    """,
    re.VERBOSE,
)

_OPENERS: Final = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # ident, string, number, op, other
    text: str
    line: int
    col: int
    depth: int  # bracket depth before the token
    first_on_line: bool


@dataclass(frozen=True, slots=True)
class Finding:
    line: int
    col: int
    message: str
    code: str


@dataclass(slots=True)
class Statement:
    tokens: list[Token]

    @property
    def keyword(self) -> str:
        return self.tokens[0].text


@dataclass(slots=True)
class ModuleInfo:
    path: str
    package: str | None = None
    package_line: int = 1
    imports: set[str] = field(default_factory=set)
    rule_names: set[str] = field(default_factory=set)
    function_names: set[str] = field(default_factory=set)
    statements: list[Statement] = field(default_factory=list)


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    line, line_start, depth, first = 1, 0, 0, True
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup or "other"
        text = match.group()
        if kind == "nl":
            line, line_start, first = line + 1, match.end(), True
            continue
        if kind in ("ws", "comment"):
            continue
        if kind == "raw":
            kind = "string"
        elif kind == "badstring":
            kind = "other"
        col = match.start() - line_start + 1
        if text in (")", "]", "}"):
            depth = max(depth - 1, 0)
        tokens.append(Token(kind, text, line, col, depth, first))
        first = False
        if text in _OPENERS:
            depth += 1
        if kind == "string" and "\n" in text:  # raw strings may span lines
            line += text.count("\n")
            line_start = match.start() + text.rfind("\n") + 1
    return tokens


def split_statements(tokens: list[Token]) -> list[Statement]:
    statements: list[Statement] = []
    current: list[Token] = []
    for token in tokens:
        starts_new = (
            current
            and token.depth == 0
            and token.first_on_line
            and token.text not in _CONTINUES_BEFORE
            and current[-1].text not in _CONTINUES_AFTER
        )
        if starts_new:
            statements.append(Statement(current))
            current = []
        current.append(token)
    if current:
        statements.append(Statement(current))
    return statements


def scan_module(path: str, source: str) -> ModuleInfo:
    info = ModuleInfo(path=path)
    info.statements = split_statements(tokenize(source))
    for statement in info.statements:
        toks = statement.tokens
        if statement.keyword == "package":
            info.package = _ref_text(toks[1:])
            info.package_line = toks[0].line
        elif statement.keyword == "import":
            alias = _import_alias(toks[1:])
            if alias:
                info.imports.add(alias)
        else:
            head = toks[1:] if statement.keyword == "default" else toks
            if head and head[0].kind == "ident" and head[0].text not in KEYWORDS:
                info.rule_names.add(head[0].text)
                if _head_is_function(head):
                    info.function_names.add(head[0].text)
    return info


def _ref_text(tokens: list[Token]) -> str:
    parts: list[str] = []
    for tok in tokens:
        if tok.kind == "ident":
            parts.append(tok.text)
        elif tok.kind == "string":
            parts.append(tok.text.strip('"`'))
    return ".".join(parts)


def _import_alias(tokens: list[Token]) -> str | None:
    texts = [t.text for t in tokens]
    if "as" in texts:
        i = texts.index("as")
        return texts[i + 1] if i + 1 < len(texts) else None
    if texts[:1] in (["rego"], ["future"]):
        return None
    idents = [t.text for t in tokens if t.kind == "ident"]
    return idents[-1] if idents else None


def _head_ref_end(head: list[Token]) -> int:
    """Index just past the rule's reference (`a.b[x]`), starting at head[0]."""
    i = 1
    while i < len(head):
        tok = head[i]
        if tok.text == "." and i + 1 < len(head) and head[i + 1].kind == "ident":
            i += 2
        elif tok.text == "[":
            i = _matching(head, i) + 1
        else:
            break
    return i


def _head_is_function(head: list[Token]) -> bool:
    end = _head_ref_end(head)
    return end < len(head) and head[end].text == "("


def _matching(tokens: list[Token], open_index: int) -> int:
    """Index of the bracket closing tokens[open_index] (or the last index)."""
    depth = tokens[open_index].depth
    closer = _OPENERS[tokens[open_index].text]
    for j in range(open_index + 1, len(tokens)):
        if tokens[j].text == closer and tokens[j].depth == depth:
            return j
    return len(tokens) - 1


def check_modules(modules: dict[str, str], builtins: Iterable[str]) -> dict[str, list[Finding]]:
    """Run every static check; returns findings per module path."""
    infos = {path: scan_module(path, source) for path, source in modules.items()}
    builtin_names = frozenset(builtins)
    all_functions = {name for info in infos.values() for name in info.function_names}
    rules_by_package: dict[str | None, set[str]] = {}
    for info in infos.values():
        rules_by_package.setdefault(info.package, set()).update(info.rule_names)
    functions_by_package: dict[str | None, set[str]] = {}
    for info in infos.values():
        functions_by_package.setdefault(info.package, set()).update(info.function_names)

    findings: dict[str, list[Finding]] = {path: [] for path in modules}
    defaults: dict[tuple[str | None, str], tuple[str, int]] = {}
    constants: dict[tuple[str | None, str], tuple[str, str, int]] = {}
    for path, info in infos.items():
        out = findings[path]
        package_rules = rules_by_package.get(info.package, set())
        package_functions = functions_by_package.get(info.package, set())
        for statement in info.statements:
            toks = statement.tokens
            if statement.keyword in ("package", "import"):
                continue
            if statement.keyword == "default":
                name = _ref_text(toks[1 : _head_ref_end(toks[1:]) + 1])
                key = (info.package, name)
                if key in defaults:
                    first_path, first_line = defaults[key]
                    out.append(
                        Finding(
                            toks[0].line,
                            toks[0].col,
                            f"multiple default rules {name} found (first at "
                            f"{first_path}:{first_line})",
                            "rego_type_error",
                        )
                    )
                else:
                    defaults[key] = (path, toks[0].line)
                continue
            out.extend(_v0_findings(toks))
            out.extend(
                _call_findings(toks, builtin_names, package_functions, all_functions, info.imports)
            )
            out.extend(_reassign_findings(toks))
            out.extend(_hazard_findings(toks))
            known = package_rules | info.imports | package_functions | {"input", "data"}
            out.extend(_unsafe_findings(toks, known))
            constant = _constant_rule(toks)
            if constant is not None:
                name, value = constant
                key = (info.package, name)
                previous = constants.get(key)
                if previous is None:
                    constants[key] = (value, path, toks[0].line)
                elif previous[0] != value:
                    out.append(
                        Finding(
                            toks[0].line,
                            toks[0].col,
                            f"rule {name} produces conflicting values: {previous[0]} at "
                            f"{previous[1]}:{previous[2]} and {value}",
                            "eval_conflict_error",
                        )
                    )
    return findings


def _clauses(toks: list[Token]) -> list[list[Token]]:
    """Split a rule into its head clause and `else` clauses (at depth 0)."""
    clauses: list[list[Token]] = [[]]
    for tok in toks:
        if tok.text == "else" and tok.depth == 0:
            clauses.append([])
        clauses[-1].append(tok)
    return clauses


def _v0_findings(toks: list[Token]) -> list[Finding]:
    findings: list[Finding] = []
    head_end = _head_ref_end(toks) if toks[0].kind == "ident" else 0
    partial_set_head = head_end > 1 and toks[head_end - 1].text == "]" and toks[0].kind == "ident"
    for clause in _clauses(toks):
        seen_if = False
        for i, tok in enumerate(clause):
            if tok.depth != 0:
                continue
            if tok.text == "if":
                seen_if = True
            if tok.text != "{" or seen_if:
                continue
            prev = clause[i - 1].text if i > 0 else ""
            if prev in (":=", "=", "==", "!=", ",", "(", "[", "|", "&", "+", "-", "in", ":"):
                continue  # an object or set literal, not a body
            # OPA reports where the rule (or else clause) starts, not the brace.
            findings.append(
                Finding(
                    clause[0].line,
                    clause[0].col,
                    "`if` keyword is required before rule body",
                    "rego_parse_error",
                )
            )
            texts = {t.text for t in clause if t.depth == 0}
            if partial_set_head and not texts & {":=", "=", "contains", "else"}:
                findings.append(
                    Finding(
                        toks[0].line,
                        toks[0].col,
                        "`contains` keyword is required for partial set rules",
                        "rego_parse_error",
                    )
                )
            break
    return findings


def _call_findings(
    toks: list[Token],
    builtins: frozenset[str],
    package_functions: set[str],
    all_functions: set[str],
    imports: set[str],
) -> list[Finding]:
    findings: list[Finding] = []
    head_end = _head_ref_end(toks) if toks[0].kind == "ident" else 0
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok.kind != "ident" or (i > 0 and toks[i - 1].text == "."):
            i += 1
            continue
        j, parts = i + 1, [tok.text]
        while j + 1 < len(toks) and toks[j].text == "." and toks[j + 1].kind == "ident":
            parts.append(toks[j + 1].text)
            j += 2
        is_call = j < len(toks) and toks[j].text == "(" and not (i == 0 and j == head_end)
        if is_call and parts[0] not in KEYWORDS:
            name = ".".join(parts)
            known = (
                name in builtins
                or (len(parts) == 1 and (name in package_functions or name in imports))
                or (
                    len(parts) > 1
                    and (parts[0] == "data" or parts[0] in imports)
                    and parts[-1] in all_functions
                )
            )
            if not known:
                findings.append(
                    Finding(tok.line, tok.col, f"undefined function {name}", "rego_type_error")
                )
        i = j
    return findings


# Calls that corrupt memory in regopy 1.5.2 once greenlet (sqlalchemy[asyncio], structlog) is
# loaded before regopy: the timezone forms, whose first argument is a [ns, tz, ...] array.
_TIMEZONE_FORMS: Final = frozenset({"time.clock", "time.date", "time.format", "time.weekday"})


def _hazard_findings(toks: list[Token]) -> list[Finding]:
    findings: list[Finding] = []
    for i in range(len(toks) - 5):
        window = toks[i : i + 5]
        name = "".join(t.text for t in window[:3])
        if (
            name in _TIMEZONE_FORMS
            and window[3].text == "("
            and window[4].text == "["
            and (i == 0 or toks[i - 1].text != ".")
        ):
            findings.append(
                Finding(
                    window[0].line,
                    window[0].col,
                    f"{name} with a timezone is not supported by the embedded engine "
                    "(regopy 1.5.2 corrupts memory in it)",
                    "unsupported_builtin",
                )
            )
    return findings


def _body_start(clause: list[Token]) -> int | None:
    for i, tok in enumerate(clause):
        if tok.depth == 0 and tok.text == "if":
            return i + 1
    return None


def _reassign_findings(toks: list[Token]) -> list[Finding]:
    findings: list[Finding] = []
    for clause in _clauses(toks):
        start = _body_start(clause)
        if start is None or start >= len(clause):
            continue
        body = clause[start:]
        level = body[0].depth + 1 if body[0].text == "{" else body[0].depth
        assigned: set[str] = set()
        for i, tok in enumerate(body[:-1]):
            if tok.kind == "ident" and tok.depth == level and body[i + 1].text == ":=":
                if i > 0 and body[i - 1].text in (".", ","):
                    continue
                if tok.text in assigned:
                    findings.append(
                        Finding(
                            tok.line,
                            tok.col,
                            f"var {tok.text} assigned above",
                            "rego_compile_error",
                        )
                    )
                assigned.add(tok.text)
    return findings


def _constant_rule(toks: list[Token]) -> tuple[str, str] | None:
    """`name := <scalar>` / `name = <scalar>` without a body: (name, value) or None."""
    if (
        len(toks) == 3
        and toks[0].kind == "ident"
        and toks[0].text not in KEYWORDS
        and toks[1].text in (":=", "=")
        and (toks[2].kind in ("string", "number") or toks[2].text in ("true", "false", "null"))
    ):
        return toks[0].text, toks[2].text
    return None


def _unsafe_findings(toks: list[Token], known: set[str]) -> list[Finding]:
    findings: list[Finding] = []
    if toks[0].kind != "ident" or toks[0].text in KEYWORDS:
        return findings
    head_end = _head_ref_end(toks)
    params: set[str] = set()
    if head_end < len(toks) and toks[head_end].text == "(":
        close = _matching(toks, head_end)
        params = {t.text for t in toks[head_end + 1 : close] if t.kind == "ident"}
    binding = _binding_positions(toks)
    for clause in _clauses(toks):
        occurrences: dict[str, list[int]] = {}
        bound: set[str] = set()
        offset = toks.index(clause[0])
        for k, tok in enumerate(clause):
            i = offset + k
            if i == 0 or tok.kind != "ident" or tok.text in KEYWORDS or tok.text == "_":
                continue
            if toks[i - 1].text == "." or tok.text in known or tok.text in params:
                continue
            if i + 1 < len(toks) and toks[i + 1].text == ":" and tok.depth > 0:
                continue  # object key written as a bare name
            if _is_call_root(toks, i):
                continue
            occurrences.setdefault(tok.text, []).append(i)
            if i in binding:
                bound.add(tok.text)
        for name, positions in occurrences.items():
            if name not in bound:
                tok = toks[positions[0]]
                findings.append(
                    Finding(tok.line, tok.col, f"var {name} is unsafe", "rego_unsafe_var_error")
                )
    return findings


def _is_call_root(toks: list[Token], i: int) -> bool:
    j = i + 1
    while j + 1 < len(toks) and toks[j].text == "." and toks[j + 1].kind == "ident":
        j += 2
    return j < len(toks) and toks[j].text == "("


def _binding_positions(toks: list[Token]) -> set[int]:
    """Token indexes where an identifier gets bound (or may be, to stay conservative)."""
    bound: set[int] = set()
    n = len(toks)
    for i, tok in enumerate(toks):
        nxt = toks[i + 1].text if i + 1 < n else ""
        prev = toks[i - 1].text if i > 0 else ""
        if tok.kind == "ident" and (nxt in (":=", "=") or prev == "="):
            bound.add(i)
        if tok.text in ("some", "every"):
            j = i + 1
            while j < n and toks[j].text != "in" and not (j > i + 1 and toks[j].first_on_line):
                if toks[j].text in (";", "{"):
                    break
                bound.add(j)
                j += 1
        if (
            tok.text == "["
            and i > 0
            and (toks[i - 1].kind in ("ident", "string") or toks[i - 1].text in ("]", ")"))
        ):
            close = _matching(toks, i)
            # ref[x] iterates: the key variables are bound by the lookup.
            bound.update(range(i + 1, close))
        if tok.text in _OPENERS:
            close = _matching(toks, i)
            after = toks[close + 1].text if close + 1 < n else ""
            if after in (":=", "=") or prev == "=":
                bound.update(range(i + 1, close))  # destructuring
    return bound

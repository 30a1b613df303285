"""Checks on a bundle's shape that need no Rego: paths, sizes, and storable text and data.

The data document must be stored exactly as it was validated and digested. PostgreSQL's jsonb
cannot hold U+0000, no JSON text can carry a lone surrogate, and the JSON column replaces both
with U+FFFD on the way in (`models.base`), which can merge two keys. So such data is refused here
with its JSON pointer, never cleaned later.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

from control_plane.policy.validation.opa import PolicyIssue

MAX_MODULES: Final = 256
MAX_MODULE_BYTES: Final = 1024 * 1024
MAX_DATA_BYTES: Final = 8 * 1024 * 1024
DATA_FILE: Final = "data.json"
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def structure_issues(modules: Mapping[str, str], data: object) -> list[PolicyIssue]:
    """Problems with module paths and sources and with the data document, if any."""
    if not isinstance(modules, Mapping) or not modules:
        return [PolicyIssue("", None, None, "a bundle needs at least one module", "invalid_bundle")]
    issues: list[PolicyIssue] = []
    if len(modules) > MAX_MODULES:
        issues.append(
            PolicyIssue("", None, None, f"more than {MAX_MODULES} modules", "invalid_bundle")
        )
    for path, source in modules.items():
        problem = path_problem(path)
        if problem:
            issues.append(PolicyIssue(str(path), None, None, problem, "invalid_path"))
            continue
        problem = _source_problem(source)
        if problem:
            issues.append(PolicyIssue(path, None, None, problem, "invalid_module"))
    if not isinstance(data, dict):
        issues.append(
            PolicyIssue(DATA_FILE, None, None, "data must be a JSON object", "invalid_data")
        )
        return issues
    issues.extend(data_issues(data))
    return issues


def path_problem(path: object) -> str | None:
    """Why `path` is not a relative POSIX `*.rego` path, or None."""
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


def _source_problem(source: object) -> str | None:
    if not isinstance(source, str):
        return "module source must be text"
    if "\x00" in source:
        return "module contains NUL"
    if not _is_unicode(source):
        return "module is not valid UTF-8 (lone surrogate)"
    if len(source.encode("utf-8")) > MAX_MODULE_BYTES:
        return f"module exceeds {MAX_MODULE_BYTES} bytes"
    return None


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def pointer(path: list[str | int]) -> str:
    """RFC 6901 JSON pointer of `path`."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def data_issues(data: dict[str, Any]) -> list[PolicyIssue]:
    """Keys and strings that cannot be stored as they are, non-finite numbers, excess size."""
    issues: list[PolicyIssue] = []
    stack: list[tuple[Any, list[str | int]]] = [(data, [])]
    while stack and len(issues) < 20:
        value, path = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                if not isinstance(key, str):
                    issues.append(_data_issue(path, "object keys must be strings"))
                    continue
                problem = _text_problem(key)
                if problem:
                    issues.append(_data_issue([*path, key], f"object key {problem}"))
                stack.append((child, [*path, key]))
        elif isinstance(value, list):
            stack.extend((child, [*path, i]) for i, child in enumerate(value))
        elif isinstance(value, str):
            problem = _text_problem(value)
            if problem:
                issues.append(_data_issue(path, f"string {problem}"))
        elif isinstance(value, float) and not math.isfinite(value):
            issues.append(_data_issue(path, "numbers must be finite"))
        elif not (value is None or isinstance(value, bool | int | float)):
            issues.append(_data_issue(path, f"{type(value).__name__} is not JSON"))
    if issues:
        return sorted(issues, key=lambda i: i.message)
    if len(json.dumps(data, ensure_ascii=False).encode("utf-8")) > MAX_DATA_BYTES:
        return [
            PolicyIssue(
                DATA_FILE, None, None, f"data exceeds {MAX_DATA_BYTES} bytes", "invalid_data"
            )
        ]
    return []


def canonical_numbers(value: Any) -> Any:
    """`value` with numbers in the form every database hands back: no -0.0, and integral
    floats that JSON writes with an exponent (1e+20) as integers. PostgreSQL's jsonb stores
    numbers as `numeric`, which keeps neither; both forms are equal numbers in Rego, so the
    revision is digested and validated in this form and stored exactly."""
    if isinstance(value, dict):
        return {k: canonical_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical_numbers(v) for v in value]
    if isinstance(value, float) and math.isfinite(value):
        if value == 0:
            return 0.0
        if value.is_integer() and "e" in repr(value):
            return int(value)
    return value


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains U+0000 (NUL), which cannot be stored"
    if not _is_unicode(text):
        return "contains a lone surrogate, which is not Unicode text"
    return None


def _data_issue(path: list[str | int], problem: str) -> PolicyIssue:
    where = json.dumps(pointer(path) or "/")  # quoted and escaped: the path may hold NUL
    return PolicyIssue(DATA_FILE, None, None, f"data at {where}: {problem}", "invalid_data")

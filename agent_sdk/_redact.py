"""Client-side redaction of audit records, from a decision's ``redact`` obligations.

A pattern is a dotted path (``resource.card_number``) with the server's wildcards: ``*`` is one
segment, ``**`` any number; segments compare case-insensitively. Each pattern applies to the
record document (``resource``, ``inputs``, ``outputs``) from its root; its last segment also
applies at any depth of ``inputs`` and ``outputs``, because what an agent passes to or gets from
its tool is rarely shaped like the decision's input. The value is replaced by
``{"redacted": "sdk"}`` before it leaves the process (the server has the key for comparable
HMAC markers; the SDK has none, so it keeps nothing of the value).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MARKER: dict[str, str] = {"redacted": "sdk"}


def _match(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(rest, path[i:]) for i in range(len(path) + 1))
    if not path:
        return False
    return (head == "*" or head == path[0]) and _match(rest, path[1:])


def _walk(node: Any, path: tuple[str, ...], patterns: list[tuple[str, ...]]) -> Any:
    if path and any(_match(p, path) for p in patterns):
        return dict(MARKER)
    if isinstance(node, dict):
        return {k: _walk(v, (*path, str(k).casefold()), patterns) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, (*path, str(i)), patterns) for i, v in enumerate(node)]
    return node


def redact_record(document: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """A copy of ``document`` (a record's wire form) with the named fields replaced."""
    parsed = [tuple(s.casefold() for s in f.split(".")) for f in fields if f]
    if not parsed:
        return document
    patterns = list(parsed)
    for p in parsed:
        for part in ("inputs", "outputs"):
            patterns.append((part, "**", p[-1]))
    out: dict[str, Any] = _walk(document, (), patterns)
    return out

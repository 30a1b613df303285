"""Redaction of sensitive values before anything is stored, logged or sent.

One module answers "which values are sensitive and what replaces them", for decisions, audit
records and (by copy of the same rules) the SDK. A value is replaced by a marker
``{"redacted": "hmac-sha256:<64 hex>"}``: an HMAC-SHA256 under a server key over the value's
RFC 8785 (JCS) canonical bytes, so equal values stay comparable across records without the raw
value ever being kept.

Patterns are dotted paths rooted at the document (``resource.customer_email``) with two
wildcards: ``*`` matches exactly one segment (an object key or an array index) and ``**``
matches zero or more segments, so ``**.card_number`` finds that key at any depth, inside arrays
too. Segments compare case-insensitively (``Card_Number`` matches ``card_number``), because an
agent choosing the spelling of a key must not be able to keep its value in clear.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MARKER_KEY = "redacted"
MARKER_PREFIX = "hmac-sha256:"
MAX_PATTERN_SEGMENTS = 32


_KEY_INFO = b"agent-control-plane/redaction-hmac/v1"


def redaction_key(kek: str | bytes) -> bytes:
    """The 32-byte HMAC key for markers: HKDF-SHA256 of the key-encryption key (the KEK the
    service resolves at start-up), with an info string of its own so it is independent of the
    keys that encrypt signing keys. Stable across restarts and replicas sharing one KEK."""
    data = kek.encode("utf-8") if isinstance(kek, str) else bytes(kek)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO)
    return hkdf.derive(data)


class InvalidPatternError(ValueError):
    """A redaction pattern that is empty, has an empty segment or too many segments."""


@dataclass(frozen=True, slots=True)
class RedactionPattern:
    """A parsed pattern: casefolded segments, ``*`` and ``**`` kept as wildcards."""

    segments: tuple[str, ...]

    @classmethod
    @functools.lru_cache(maxsize=1024)
    def parse(cls, text: str) -> RedactionPattern:
        """Parse ``a.b``, ``**.card_number``, ``resource.*.iban``.

        Raises ``InvalidPatternError`` for an empty pattern, an empty segment (``a..b``) or more
        than ``MAX_PATTERN_SEGMENTS`` segments.
        """
        parts = text.split(".")
        if not text or any(p == "" for p in parts):
            raise InvalidPatternError(f"invalid redaction pattern {text!r}")
        if len(parts) > MAX_PATTERN_SEGMENTS:
            raise InvalidPatternError(f"redaction pattern {text!r} has too many segments")
        return cls(tuple(p if p in ("*", "**") else p.casefold() for p in parts))


def marker(value: Any, key: bytes) -> dict[str, str]:
    """The replacement for ``value``: ``{"redacted": "hmac-sha256:<hex>"}``.

    The HMAC is over the RFC 8785 canonical JSON of the value, so ``{"a":1,"b":2}`` and
    ``{"b":2,"a":1}`` give the same marker.
    """
    digest = hmac.new(key, _canonical(value), hashlib.sha256).hexdigest()
    return {MARKER_KEY: MARKER_PREFIX + digest}


def _canonical(value: Any) -> bytes:
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        # Outside I-JSON (integers beyond 2^53, NaN): still deterministic, and marked apart so it
        # can never collide with a JCS encoding. Redaction must not fail on what it hides.
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return b"\x00" + text.encode("utf-8", "surrogatepass")


def is_marker(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) == 1
        and isinstance(value.get(MARKER_KEY), str)
        and value[MARKER_KEY].startswith(MARKER_PREFIX)
    )


def compile_patterns(patterns: Iterable[str]) -> tuple[RedactionPattern, ...]:
    """Parse and de-duplicate patterns; raises ``InvalidPatternError`` on the first bad one."""
    return tuple(dict.fromkeys(RedactionPattern.parse(p) for p in patterns))


def redact(
    document: Any, patterns: Iterable[str | RedactionPattern], key: bytes
) -> tuple[Any, list[str]]:
    """A redacted copy of ``document`` and the JSON pointers (RFC 6901) of what was replaced.

    ``document`` is a JSON value (dicts, lists, str, int, float, bool, None); it is not changed.
    A matched value is replaced whole, whatever its type; nothing below a replaced value is
    visited. Markers already present are left as they are (redacting twice changes nothing).
    """
    compiled = tuple(
        p if isinstance(p, RedactionPattern) else RedactionPattern.parse(p) for p in patterns
    )
    replaced: list[str] = []
    if not compiled or is_marker(document):
        return _copy(document), replaced
    matcher = _matcher(compiled)
    return _walk(document, matcher.start, (), matcher, key, replaced), replaced


_State = frozenset[tuple[int, int]]
_MAX_STEPS = 4096


class _Matcher:
    """All of a document's paths against several patterns at once, one segment at a time: a
    state is the set of (pattern, position) pairs the path so far can be at (an NFA, so ``**``
    never backtracks), so each node costs one step from its parent's state, and
    a subtree whose state is empty holds nothing to redact. Steps are memoised per (state,
    segment), at most ``_MAX_STEPS`` at a time: documents repeat their keys."""

    def __init__(self, patterns: tuple[RedactionPattern, ...]) -> None:
        self._patterns = [p.segments for p in patterns]
        self._steps: dict[tuple[_State, str], tuple[_State, bool]] = {}
        self.start = self._closure({(k, 0) for k in range(len(self._patterns))})

    def _closure(self, pairs: set[tuple[int, int]]) -> _State:
        todo = list(pairs)
        while todo:
            k, i = todo.pop()
            segments = self._patterns[k]
            if i < len(segments) and segments[i] == "**" and (k, i + 1) not in pairs:
                pairs.add((k, i + 1))  # ** matches nothing more
                todo.append((k, i + 1))
        return frozenset(pairs)

    def step(self, state: _State, segment: str) -> tuple[_State, bool]:
        """The state after ``segment`` (casefolded), and whether that path is matched."""
        found = self._steps.get((state, segment))
        if found is not None:
            return found
        pairs: set[tuple[int, int]] = set()
        for k, i in state:
            segments = self._patterns[k]
            if i == len(segments):
                continue
            seg = segments[i]
            if seg == "**":
                pairs.add((k, i))  # ** swallows this segment
            elif seg == "*" or seg == segment:
                pairs.add((k, i + 1))
        after = self._closure(pairs)
        found = (after, any(i == len(self._patterns[k]) for k, i in after))
        if len(self._steps) >= _MAX_STEPS:
            self._steps.clear()
        self._steps[(state, segment)] = found
        return found


@functools.lru_cache(maxsize=256)
def _matcher(patterns: tuple[RedactionPattern, ...]) -> _Matcher:
    return _Matcher(patterns)


def _pointer(raw_path: tuple[str, ...]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in raw_path)


def _walk(
    node: Any,
    state: _State,
    raw_path: tuple[str, ...],
    matcher: _Matcher,
    key: bytes,
    replaced: list[str],
) -> Any:
    if not state:  # no pattern can match here or below
        return _copy(node)
    if isinstance(node, dict):
        return {
            k: _child(v, str(k), str(k).casefold(), state, raw_path, matcher, key, replaced)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [
            _child(v, str(i), str(i), state, raw_path, matcher, key, replaced)
            for i, v in enumerate(node)
        ]
    return node


def _child(
    value: Any,
    name: str,
    segment: str,
    state: _State,
    raw_path: tuple[str, ...],
    matcher: _Matcher,
    key: bytes,
    replaced: list[str],
) -> Any:
    """``value``, found under ``name`` (``segment`` casefolded), redacted."""
    if is_marker(value):  # left whole, whatever matches it or inside it
        return _copy(value)
    after, matched = matcher.step(state, segment)
    if matched:
        replaced.append(_pointer((*raw_path, name)))
        return marker(value, key)
    return _walk(value, after, (*raw_path, name), matcher, key, replaced)


def _copy(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _copy(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_copy(v) for v in node]
    return node


def obligation_patterns(obligations: Iterable[Any]) -> list[str]:
    """The field patterns named by ``{"type": "redact", "fields": [...]}`` obligations.

    Anything that is not such an obligation, and any field that is not a string, is ignored.
    """
    out: list[str] = []
    for obligation in obligations:
        if not isinstance(obligation, dict) or obligation.get("type") != "redact":
            continue
        for field in obligation.get("fields") or []:
            if isinstance(field, str) and field:
                out.append(field)
    return out

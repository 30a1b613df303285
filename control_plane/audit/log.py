"""What a leaf is, and checking a log from its leaves: shared by the server's ``verify`` and the
offline ``agentctl audit verify`` (which must work without a server or a database).

A leaf's canonical bytes are the RFC 8785 (JCS) encoding of ``{"index": n, "record": R}``,
where ``R`` is the stored record (itself JCS, kept verbatim). Binding the index into the hashed
bytes means a leaf moved to another place (a deletion, insertion or swap, even with the
derived hashes recomputed) disagrees with its position, so the first bad index can be named.

``LogChecker`` consumes leaves in order and reports the first bad index: a gap, a leaf whose
stored hash is not the hash of its bytes, a leaf that claims another index, a record that
differs from its leaf, a log shorter than its checkpoint, or a root that does not match the
checkpoint (localised between the last matching and first mismatching checkpoint when a history
of checkpoints is given).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from control_plane.audit import jcs
from control_plane.audit.merkle import CompactRange, leaf_hash

INT_MAX = 2**53 - 1
MAX_DEPTH = 32
MAX_RECORD_BYTES = 64 * 1024
_PREFIX = re.compile(rb'^\{"index":(0|[1-9][0-9]*),"record":')


def ijson_problem(value: Any, pointer: str = "", depth: int = 0) -> tuple[str, str] | None:
    """The first place where ``value`` cannot be canonicalised (RFC 8785 works on I-JSON:
    integers within +-(2^53 - 1), finite numbers) or nests deeper than ``MAX_DEPTH``; as
    (JSON pointer, detail), or None when it can be. Text is not checked: callers replace lone
    surrogates first (``as_unicode``)."""
    if _fits(value, depth):
        return None
    return _first_problem(value, pointer, depth)


def _first_problem(value: Any, pointer: str, depth: int) -> tuple[str, str] | None:
    stack: list[tuple[Any, str, int]] = [(value, pointer, depth)]
    while stack:
        node, where, level = stack.pop()
        if level > MAX_DEPTH:
            return where, f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(node, bool) or node is None:
            continue
        if isinstance(node, int):
            if not -INT_MAX <= node <= INT_MAX:
                return where, "integer beyond +-(2^53 - 1) cannot be canonicalised (RFC 8785)"
        elif isinstance(node, float):
            if not math.isfinite(node):
                return where, "NaN and infinities cannot be canonicalised (RFC 8785)"
        elif isinstance(node, Mapping):
            for key, item in node.items():
                escaped = str(key).replace("~", "~0").replace("/", "~1")
                stack.append((item, f"{where}/{escaped}", level + 1))
        elif isinstance(node, list | tuple):
            for index, item in enumerate(node):
                stack.append((item, f"{where}/{index}", level + 1))
    return None


def _fits(node: Any, level: int) -> bool:
    """Whether ``ijson_problem`` would find nothing: the same checks without building pointers
    (the common case, once per record on ingest)."""
    if level > MAX_DEPTH:
        return False
    kind = type(node)
    if kind is str or kind is bool or node is None:
        return True
    if kind is int:
        return bool(-INT_MAX <= node <= INT_MAX)
    if kind is float:
        return math.isfinite(node)
    if kind is dict:
        return all(_fits(item, level + 1) for item in node.values())
    if kind is list:
        return all(_fits(item, level + 1) for item in node)
    return False  # anything else: the full walk decides


def as_unicode(value: Any) -> Any:
    """A copy of a JSON value with lone surrogates replaced by U+FFFD (as Go's JSON and the
    decision store do): they are not Unicode text and RFC 8785 cannot encode them."""
    if isinstance(value, str):
        return value if _is_unicode(value) else _replace_surrogates(value)
    if isinstance(value, dict):
        return {as_unicode(k): as_unicode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_unicode(v) for v in value]
    return value


def _replace_surrogates(text: str) -> str:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _is_unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def canonical(document: Any) -> bytes:
    """RFC 8785 bytes of a JSON document (raises ``rfc8785.CanonicalizationError``; ``jcs``)."""
    return jcs.dumps(document)


def leaf_canonical(index: int, record: bytes) -> bytes:
    """The bytes hashed for the record (already JCS) at ``index``; valid JCS because "index"
    sorts before "record" and the record's own bytes are JCS."""
    return b'{"index":' + str(index).encode() + b',"record":' + record + b"}"


def split_leaf(data: bytes) -> tuple[int, bytes] | None:
    """(index, record bytes) of leaf bytes, or None when they are not in leaf form."""
    match = _PREFIX.match(data)
    if match is None or not data.endswith(b"}"):
        return None
    return int(match.group(1)), data[match.end() : -1]


@dataclass
class LogStatus:
    size: int = 0
    checkpoint_size: int | None = None
    first_bad_index: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad_index is None and self.reason is None


@dataclass
class LogChecker:
    """Feed leaves in order with ``add``; ``finish`` gives the verdict. ``checkpoints`` maps
    tree sizes to root hashes (signatures already verified); the largest is the target."""

    checkpoints: Mapping[int, bytes] = field(default_factory=dict)
    status: LogStatus = field(default_factory=LogStatus)
    _compact: CompactRange = field(default_factory=CompactRange)
    _roots: dict[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if 0 in self.checkpoints:
            self._roots[0] = self._compact.root()
        if self.checkpoints:
            self.status.checkpoint_size = max(self.checkpoints)

    @property
    def failed(self) -> bool:
        return self.status.first_bad_index is not None or self.status.reason is not None

    def fail(self, index: int, reason: str) -> LogStatus:
        """Record that the leaf at ``index`` is bad for ``reason`` found outside the leaf
        (the first such finding stands); the status to answer."""
        self._bad(index, reason)
        return self.status

    def _bad(self, index: int | None, reason: str) -> bool:
        if not self.failed:
            self.status.first_bad_index = index
            self.status.reason = reason
        return False

    def add(
        self, seq: int, data: bytes, stored_hash: bytes, *, record_text: bytes | None = None
    ) -> bool:
        """Check the leaf stored at ``seq``; False once the log is known bad (stop feeding).

        ``record_text`` is the copy of the record kept outside the leaf (the records table), if
        any; it must equal the record inside the leaf.
        """
        if self.failed:
            return False
        n = self._compact.size
        if seq != n:
            if seq == n - 1:
                return self._bad(n - 1, f"index {n - 1} appears twice (a leaf was inserted)")
            return self._bad(n, f"expected index {n}, found {seq} (a leaf is missing or moved)")
        if leaf_hash(data) != stored_hash:
            return self._bad(n, f"the leaf at index {n} does not hash to its stored leaf hash")
        parts = split_leaf(data)
        if parts is None:
            return self._bad(n, f"the leaf at index {n} is not in leaf form")
        claimed, record = parts
        if claimed != n:
            if claimed == n - 1:
                return self._bad(n - 1, f"a leaf was inserted at index {n - 1}")
            return self._bad(n, f"the leaf at index {n} was written for index {claimed}")
        if record_text is not None and record_text != record:
            return self._bad(n, f"the record at index {n} differs from its leaf")
        self._compact.append(stored_hash)
        self.status.size = self._compact.size
        if self._compact.size in self.checkpoints:
            self._roots[self._compact.size] = self._compact.root()
        return True

    def finish(self) -> LogStatus:
        if self.failed or not self.checkpoints:
            return self.status
        target = max(self.checkpoints)
        if self._compact.size < target:
            self._bad(
                self._compact.size,
                f"the log has {self._compact.size} leaves but its checkpoint has {target} "
                "(truncated)",
            )
            return self.status
        last_good = 0
        for size in sorted(self.checkpoints):
            if self._roots.get(size) != self.checkpoints[size]:
                # Every leaf hashes to its stored hash, so a leaf was rewritten together with its
                # hash: the checkpoints bound where (after the last one that matches), no more.
                if size - last_good == 1:
                    self._bad(
                        last_good,
                        f"the leaf at index {last_good} was rewritten with its leaf hash: the "
                        f"root at size {size} does not match its signed checkpoint",
                    )
                else:
                    self._bad(
                        None,
                        f"the root at size {size} does not match its signed checkpoint: a leaf "
                        f"from index {last_good} to {size - 1} was rewritten with its leaf hash "
                        "(the checkpoints do not tell which)",
                    )
                break
            last_good = size
        return self.status

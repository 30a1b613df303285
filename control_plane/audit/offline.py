"""Verifying an exported log with nothing but the export, a checkpoint and a verifier key: no
server, no database. Used by ``agentctl audit verify FILE``.

Each export line is ``{"index", "leaf_hash", "record"}``. The leaf bytes are rebuilt from the
record (RFC 8785) and the index, hashed, and compared with the line's leaf hash; the tree built
from the leaf hashes must have the checkpoint's root at the checkpoint's size, and the
checkpoint must carry a valid signature by the verifier key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import rfc8785

from control_plane.audit import jcs
from control_plane.audit.log import LogChecker, LogStatus, leaf_canonical
from control_plane.audit.merkle import leaf_hash
from control_plane.audit.note import NoteError, Verifier, open_checkpoint, unb64


def verify_export(lines: Iterable[str | bytes], checkpoint_note: str, key: str) -> LogStatus:
    """Check an export against a signed checkpoint; the first bad index and why, if any.

    Raises ``NoteError`` when the verifier key is malformed.
    """
    verifier = Verifier.parse(key)
    try:
        checkpoint = open_checkpoint(checkpoint_note, verifier)
    except NoteError as exc:
        return LogStatus(reason=f"the checkpoint does not verify: {exc}")
    checker = LogChecker(checkpoints={checkpoint.size: checkpoint.root})
    for number, raw in enumerate(lines):
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            index = line["index"]
            stored = unb64(line["leaf_hash"])
            record = jcs.dumps(line["record"])
            if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                raise ValueError("index")
        except (ValueError, KeyError, TypeError, NoteError, rfc8785.CanonicalizationError):
            position = checker.status.size
            checker.status.first_bad_index = position
            checker.status.reason = f"line {number + 1} is not a valid export line"
            return checker.status
        domain = line["record"].get("domain") if isinstance(line["record"], dict) else None
        if (
            number == 0
            and isinstance(domain, str)
            and not checkpoint.origin.endswith(f"/audit/{domain}")
        ):
            return LogStatus(
                reason=f"the checkpoint is of the log {checkpoint.origin!r}, the export of the "
                f"domain {domain!r}: not the same log"
            )
        data = leaf_canonical(index, record)
        if (
            index > 0
            and index == checker.status.size
            and leaf_hash(data) != stored
            and leaf_hash(leaf_canonical(index - 1, record)) == stored
        ):
            # This leaf was written for the index before: one was inserted ahead of it.
            checker.status.first_bad_index = index - 1
            checker.status.reason = f"a leaf was inserted at index {index - 1}"
            return checker.status
        if not checker.add(index, data, stored):
            break
    return checker.finish()

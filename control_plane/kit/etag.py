"""Strong ETags from row revisions, and ``If-Match`` parsing (RFC 9110 section 13.1.1)."""

from __future__ import annotations

import re

from control_plane.kit.errors import PreconditionFailed, PreconditionRequired

_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')


def etag(revision: int) -> str:
    return f'"{revision}"'


def require_if_match(header: str | None, current_revision: int) -> int:
    """Return the revision the caller holds, or raise 428/412.

    If-Match uses strong comparison, so a weak tag never matches. ``*`` matches any current
    representation, which still makes the write conditional on the revision read here.
    """
    if header is None or not header.strip():
        raise PreconditionRequired(
            "Send If-Match with the ETag from your last read so concurrent updates are not lost."
        )
    header = header.strip()
    if header == "*":
        return current_revision
    pos = 0
    while pos < len(header):
        match = _TAG.match(header, pos)
        if match is None:
            raise PreconditionFailed("If-Match is not a list of entity tags.")
        weak, value = match.group(1), match.group(2)
        if not weak and value == str(current_revision):
            return current_revision
        pos = match.end()
    raise PreconditionFailed(
        "The resource changed since you read it (ETag mismatch); read it again and retry."
    )

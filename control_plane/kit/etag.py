"""Strong ETags from row revisions, and ``If-Match`` parsing (RFC 9110 section 13.1.1)."""

from __future__ import annotations

import re

from control_plane.kit.errors import InvalidRequest, PreconditionFailed, PreconditionRequired

# RFC 9110 section 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, listed with commas.
_TAG = re.compile(r'[ \t]*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*(?:,|$)')


def etag(revision: int) -> str:
    return f'"{revision}"'


def require_if_match(header: str | None, current_revision: int) -> int:
    """Return the revision the caller holds, or raise 428 (absent), 400 (not a list of entity
    tags, RFC 9110 section 13.1.1) or 412 (no tag matches).

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
            raise InvalidRequest('If-Match must be "*" or a list of entity tags such as "3".')
        weak, value = match.group(1), match.group(2)
        if not weak and value == str(current_revision):
            return current_revision
        pos = match.end()
    raise PreconditionFailed(
        "The resource changed since you read it (ETag mismatch); read it again and retry."
    )

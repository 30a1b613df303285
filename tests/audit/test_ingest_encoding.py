"""Ingest's fast paths write the same bytes as the encoders they stand in for, for every value
they take: the content fingerprint (a record's MAC, which tells a retry from a conflict, must not
change for records stored by earlier versions) equals ``json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=True)``'s, and ``jcs.dumps_plain`` equals RFC 8785
(``rfc8785.dumps``) for every value ingest calls plain. Values come from the JCS test's
generator, which draws often from where encoders disagree."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import example, given, settings

from control_plane.audit import ingest, jcs
from tests.audit.test_jcs import values

PREFIX = ["0190f5c8-0000-7000-8000-000000000000", "payments"]


def _json_fingerprint(content: dict[str, Any]) -> bytes:
    return json.dumps(
        [*PREFIX, content], sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode()


@settings(max_examples=1000, deadline=None)
@given(values)
@example({"a": "\x7f"})
@example({"a": "caf\u00e9", "b": 1})
@example({"a": 1e-05, "b": 1e16})
@example({"\U0001f600": 1})
@example({"a": "\ud800"})
def test_fingerprint_fast_path_writes_json_bytes(value: Any) -> None:
    content = {"id": "x", "inputs": {"v": value}}
    plain = ingest._shape(content, 1) == ingest.PLAIN
    fast_content, fast = ingest._content(content, PREFIX, plain=plain)
    slow_content, slow = ingest._content(content, PREFIX, plain=False)
    assert fast == slow
    assert fast_content == slow_content
    if "\\ud" not in _json_fingerprint(content).decode():
        assert fast == _json_fingerprint(content)


@settings(max_examples=1000, deadline=None)
@given(values)
@example({"a": '\x00\x1f\x7f\u2028"\\', "b": [2**53 - 1]})
@example({"\uffff": 1, "\ue000": 2})
def test_plain_values_encode_as_rfc8785(value: Any) -> None:
    if ingest._shape(value, 1) != ingest.PLAIN:
        return
    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeError) as exc:
        with pytest.raises(type(exc)):
            jcs.dumps_plain(value)
        return
    assert jcs.dumps_plain(value) == expected

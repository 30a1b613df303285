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
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from control_plane.audit import ingest, jcs
from control_plane.audit.log import ijson_problem
from control_plane.audit.schemas import AuditBatch, AuditRecordIn
from tests.audit.test_jcs import deep, keys, values

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


def _floats_or_astral_keys(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(max(k, default="") > "\uffff" for k in value) or any(
            _floats_or_astral_keys(v) for v in value.values()
        )
    if isinstance(value, list):
        return any(_floats_or_astral_keys(v) for v in value)
    return False


@settings(max_examples=1000, deadline=None)
@given(deep, st.integers(1, 34))
@example([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]], 1)
@example([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]], 1)
@example({"a": {}}, 32)
@example({"a": 1}, 32)
@example({"\U0001f600": [1.5]}, 1)
@example({"a": [1, 2**53]}, 1)
def test_the_shape_of_free_form_values(value: Any, level: int) -> None:
    """Ingest sorts each record once: BAD exactly when ``ijson_problem`` finds a place RFC 8785
    cannot encode (the 422 names it), FLOATS when the value holds a float or a key beyond
    U+FFFF (the full JCS encoder), else PLAIN (orjson's bytes)."""
    shape = ingest._shape(value, level)
    if ijson_problem(value, "", level) is not None:
        assert shape == ingest.BAD
    else:
        assert shape == (ingest.FLOATS if _floats_or_astral_keys(value) else ingest.PLAIN)


offsets = st.sampled_from(["Z", "z", "+00:00", "+05:30", "-23:59"])
fractions = st.sampled_from(["00", "00.5", "59.123456", "00.000000001"])
body_records = st.fixed_dictionaries(
    {
        "id": st.uuids().map(str),
        "timestamp": st.tuples(fractions, offsets).map(lambda t: f"2026-11-29T10:00:{''.join(t)}"),
        "action": st.just("payments.refund"),
        "resource": st.fixed_dictionaries(
            {"type": st.just("order"), "id": st.just("o-1")},
            optional={"amount": values, "\U0001f600": values, "nested": values},
        ),
        "status": st.sampled_from(["succeeded", "failed", "compensated", "cancelled"]),
    },
    optional={
        "inputs": st.dictionaries(keys, values, max_size=4),
        "outputs": st.dictionaries(keys, values, max_size=4),
        "rationale": st.one_of(st.none(), st.text(max_size=5)),
        "decision_id": st.one_of(st.none(), st.uuids().map(lambda u: str(u).upper())),
        "parent_id": st.one_of(st.none(), st.uuids().map(str)),
        "trace_id": st.just("4bf92f3577b34da6a3ce929d0e0e4736"),
        "traceparent": st.just("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    },
)


@settings(max_examples=500, deadline=None)
@given(st.lists(body_records, min_size=1, max_size=3))
def test_records_as_json_values_are_pydantics_dump(records: list[dict[str, Any]]) -> None:
    """A record's content MAC is taken over its JSON values: ``json_values`` must give what
    pydantic's ``dump_python(mode="json")`` gives for every batch the endpoint stores (one
    whose free-form values RFC 8785 can encode; any other is refused before)."""
    try:
        batch = AuditBatch.model_validate_json(json.dumps({"records": records}))
    except ValidationError:
        return
    if any(ingest._free_form_shape(r) == ingest.BAD for r in batch.records):
        return
    expected = TypeAdapter(list[AuditRecordIn]).dump_python(batch.records, mode="json")
    assert ingest.json_values(batch.records) == expected

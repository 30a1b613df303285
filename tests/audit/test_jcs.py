"""The fast RFC 8785 encoder gives the reference's bytes (``rfc8785.dumps``) for every value, and
refuses exactly what the reference refuses, with the same error. Generated values draw often
from the classes where a plain sorted-keys JSON encoder differs from JCS: floats such as 1e21,
1e-7 and -0; keys beyond the BMP (they sort differently by UTF-16 code units); control
characters; lone surrogates; integers at and beyond 2^53."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

from control_plane.audit import jcs, log

INT_MAX = 2**53 - 1

# Characters where encoders disagree: controls, quote and backslash, DEL, U+2028/9, the BMP's
# top (sorts after a surrogate pair by code point, before it by UTF-16 unit), astral characters,
# lone surrogates (not Unicode: both must refuse).
TRICKY = [chr(c) for c in (*range(0x20), 0x22, 0x5C, 0x7F, 0x2028, 0x2029, 0xFEFF)]
TRICKY += ["\ue000", "\uffff", "\U00010000", "\U0001f600", "\U0010ffff", "\ud800", "\udfff"]
chars = st.one_of(st.sampled_from(TRICKY), st.characters(exclude_categories=()))
text = st.text(chars, max_size=12)
keys = st.one_of(text, st.sampled_from(["a", "b", "\ue000", "\U0001f600", "\uffff", "é"]))

EDGE_FLOATS = [1e21, 1e-7, -0.0, 0.0, 1e-6, 9.999999999999999e20, 5e-324, 1.7976931348623157e308]
EDGE_FLOATS += [0.1, 100.0, 1.5e16, 123456789012345680000.0, -1e21, 2.5e-7, 1 / 3, 4.35]
floats = st.one_of(st.floats(), st.sampled_from([*EDGE_FLOATS, math.nan, math.inf, -math.inf]))
ints = st.one_of(
    st.integers(-INT_MAX, INT_MAX),
    st.sampled_from([INT_MAX, -INT_MAX, INT_MAX + 1, -INT_MAX - 1, 2**63, 2**64]),
)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, text)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)


def _same(value: Any) -> None:
    """Both give the same bytes, or both raise the same error (the reference refuses a key with
    a lone surrogate with UnicodeEncodeError rather than its own error: so must this)."""
    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeError) as exc:
        with pytest.raises(type(exc)):
            jcs.dumps(value)
        return
    assert jcs.dumps(value) == expected


@settings(max_examples=1000, deadline=None)
@given(values)
@example({"\U0001f600": 1, "\ue000": 2, "\uffff": 3})
@example([1e21, 1e-7, -0.0, 5e-324, 1e-6, 0.000001, 1.5e-7])
@example({"a": '\x00\x1f\x7f\u2028"\\', "b": [INT_MAX, -INT_MAX]})
@example({"a": 2**53})
@example({"a": math.nan})
@example({"k\ud800": 1})
def test_equals_the_reference(value: Any) -> None:
    _same(value)


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_are_ecmascript(value: float) -> None:
    assert jcs.dumps(value) == rfc8785.dumps(value)


records = st.fixed_dictionaries(
    {
        "id": st.uuids().map(str),
        "kind": st.just("action"),
        "domain": st.just("payments"),
        "agent": st.fixed_dictionaries({"id": st.uuids().map(str), "name": text}),
        "timestamp": st.just("2026-11-29T10:00:00Z"),
        "action": st.just("payments.refund"),
        "resource": st.fixed_dictionaries(
            {"type": text, "id": text}, optional={"amount": values, "\U0001f600": values}
        ),
        "inputs": st.dictionaries(keys, values, max_size=4),
        "outputs": st.dictionaries(keys, values, max_size=4),
        "rationale": st.one_of(st.none(), text),
        "status": st.sampled_from(["succeeded", "failed", "compensated", "cancelled"]),
        "decision_id": st.one_of(st.none(), st.uuids().map(str)),
        "trace_id": st.none(),
        "traceparent": st.none(),
        "parent_id": st.none(),
        "received_at": st.just("2026-11-29T10:00:01.123456Z"),
    }
)


@settings(max_examples=500, deadline=None)
@given(records)
def test_records_equal_the_reference(record: dict[str, Any]) -> None:
    """Values of the shape ingestion stores."""
    _same(record)


def test_other_types_go_to_the_reference() -> None:
    """Tuples and str subclasses are the reference's business (it encodes them); a UUID, which
    orjson would encode, is refused as the reference refuses it."""
    assert jcs.dumps((1, "a")) == rfc8785.dumps((1, "a")) == b'[1,"a"]'
    with pytest.raises(rfc8785.CanonicalizationError):
        jcs.dumps({"id": uuid.uuid4()})
    with pytest.raises(rfc8785.CanonicalizationError):
        jcs.dumps({1: "a"})


deep = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(keys, inner, max_size=2)),
    max_leaves=60,
)


@settings(max_examples=1000, deadline=None)
@given(deep, st.integers(0, 34))
@example([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]], 0)
@example({"a": [1, 2**53]}, 0)
def test_the_quick_ijson_check_agrees_with_the_walk(value: Any, depth: int) -> None:
    """``ijson_problem`` answers from a quick check when a value fits; it must fit exactly when
    the full walk (which names the first bad place) finds nothing."""
    assert log._fits(value, depth) == (log._first_problem(value, "", depth) is None)

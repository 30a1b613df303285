"""Redaction: patterns at any depth, case-insensitive, HMAC markers that compare equal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control_plane.kit.redaction import (
    InvalidPatternError,
    is_marker,
    marker,
    obligation_patterns,
    redact,
)

KEY = b"k" * 32
SECRET = "4111-1111-1111-1111-MARKER"


def test_top_level_path_is_replaced_by_an_hmac_marker() -> None:
    doc = {"resource": {"customer_email": "a@example.com", "id": "o-1"}}
    out, pointers = redact(doc, ["resource.customer_email"], KEY)
    assert out["resource"]["id"] == "o-1"
    assert is_marker(out["resource"]["customer_email"])
    assert pointers == ["/resource/customer_email"]
    assert doc["resource"]["customer_email"] == "a@example.com"  # input untouched


def test_double_star_finds_a_key_at_any_depth_and_in_arrays_whatever_its_case() -> None:
    doc = {
        "resource": {
            "payment": {"Card_Number": SECRET},
            "accounts": [{"iban": "DE00"}, {"nested": {"IBAN": "FR00"}}],
            "card_number": SECRET,
        }
    }
    out, pointers = redact(doc, ["**.card_number", "**.iban"], KEY)
    assert SECRET not in json.dumps(out)
    assert "DE00" not in json.dumps(out)
    assert "FR00" not in json.dumps(out)
    assert sorted(pointers) == [
        "/resource/accounts/0/iban",
        "/resource/accounts/1/nested/IBAN",
        "/resource/card_number",
        "/resource/payment/Card_Number",
    ]


def test_equal_values_give_equal_markers_and_key_order_does_not_matter() -> None:
    assert marker({"a": 1, "b": 2}, KEY) == marker({"b": 2, "a": 1}, KEY)
    assert marker("x", KEY) != marker("y", KEY)
    assert marker("x", KEY) != marker("x", b"other-key-other-key-other-key-00")


def test_single_star_matches_exactly_one_segment() -> None:
    doc = {"a": {"b": {"c": 1}, "c": 2}}
    out, _ = redact(doc, ["a.*.c"], KEY)
    assert is_marker(out["a"]["b"]["c"])
    assert out["a"]["c"] == 2


@pytest.mark.parametrize("pattern", ["**.secret", "x.**", "**", "x.*"])
def test_redacting_twice_changes_nothing(pattern: str) -> None:
    once, _ = redact({"x": {"secret": 1}, "y": 2}, [pattern], KEY)
    twice, pointers = redact(once, [pattern], KEY)
    assert twice == once
    assert pointers == []


def test_a_marker_is_left_whole_whatever_matches_inside_it() -> None:
    once, _ = redact({"x": {"secret": 1}}, ["**.secret"], KEY)
    again, pointers = redact(once, ["x.*.redacted", "**.redacted"], KEY)
    assert again == once
    assert pointers == []


@pytest.mark.parametrize("bad", ["", "a..b", ".a", "a."])
def test_malformed_patterns_are_refused(bad: str) -> None:
    with pytest.raises(InvalidPatternError):
        redact({}, [bad], KEY)


def test_obligation_patterns_ignore_what_is_not_a_redact_obligation() -> None:
    obligations: list[Any] = [
        {"type": "redact", "fields": ["resource.a", 5, ""]},
        {"type": "approval"},
        "junk",
        {"type": "redact", "fields": None},
    ]
    assert obligation_patterns(obligations) == ["resource.a"]


SENSITIVE = st.sampled_from(["card_number", "Card_Number", "CARD_NUMBER", "iban", "IBAN"])
KEYS = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)
LEAF = st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none())


def _documents() -> st.SearchStrategy[Any]:
    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.one_of(KEYS, SENSITIVE), children, max_size=4),
        )

    return st.recursive(LEAF, extend, max_leaves=20)


@given(doc=_documents(), where=st.lists(KEYS, max_size=4), name=SENSITIVE)
def test_no_sensitive_value_survives_wherever_it_is_put(
    doc: Any, where: list[str], name: str
) -> None:
    leaf: dict[str, Any] = {name: SECRET}
    for part in reversed(where):
        leaf = {part: [leaf]} if len(part) % 2 else {part: leaf}
    container: dict[str, Any] = {"root": doc, "hidden": leaf}
    out, _ = redact(container, ["**.card_number", "**.iban"], KEY)
    assert SECRET not in json.dumps(out)

    def no_clear(n: Any) -> None:
        if isinstance(n, dict):
            for k, v in n.items():
                if k.casefold() in ("card_number", "iban"):
                    assert is_marker(v)
                else:
                    no_clear(v)
        elif isinstance(n, list):
            for v in n:
                no_clear(v)

    no_clear(out)


PATTERN_SEGMENTS = st.sampled_from(["*", "**", "a", "B", "card_number", "0", "1"])


def _matches(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    """A whole path against a pattern, by recursion (``**``: zero or more segments)."""
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_matches(rest, path[i:]) for i in range(len(path) + 1))
    return bool(path) and (head in ("*", path[0])) and _matches(rest, path[1:])


def _by_whole_paths(node: Any, path: tuple[str, ...], patterns: list[Any]) -> Any:
    """The reference: every node's whole path matched against every pattern."""
    if is_marker(node):
        return node
    if path and any(_matches(p.segments, path) for p in patterns):
        return marker(node, KEY)
    if isinstance(node, dict):
        return {k: _by_whole_paths(v, (*path, k.casefold()), patterns) for k, v in node.items()}
    if isinstance(node, list):
        return [_by_whole_paths(v, (*path, str(i)), patterns) for i, v in enumerate(node)]
    return node


@given(
    doc=st.recursive(
        LEAF,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.sampled_from(["a", "A", "b", "card_number", "x"]), children),
        ),
        max_leaves=25,
    ),
    texts=st.lists(
        st.lists(PATTERN_SEGMENTS, min_size=1, max_size=4).map(".".join), min_size=1, max_size=4
    ),
)
def test_redaction_agrees_with_matching_each_whole_path(doc: Any, texts: list[str]) -> None:
    """``redact`` steps through a document one segment at a time; what it replaces is exactly
    what matching every node's whole path against every pattern replaces."""
    from control_plane.kit.redaction import RedactionPattern

    patterns = [RedactionPattern.parse(t) for t in texts]
    document = {"a": doc, "B": [doc, {"card_number": doc}]}
    out, _ = redact(document, texts, KEY)
    assert out == _by_whole_paths(document, (), patterns)


def test_redaction_key_is_stable_per_kek_and_differs_between_keks() -> None:
    from control_plane.kit.redaction import redaction_key

    assert redaction_key("a" * 43) == redaction_key("a" * 43)
    assert redaction_key("a" * 43) != redaction_key("b" * 43)
    assert len(redaction_key("a" * 43)) == 32


def test_values_outside_i_json_are_still_redacted() -> None:
    out, _ = redact({"a": {"secret": 2**60}, "b": {"secret": float("nan")}}, ["**.secret"], KEY)
    assert is_marker(out["a"]["secret"])
    assert is_marker(out["b"]["secret"])
    assert marker(2**60, KEY) != marker(2**60 + 1, KEY)

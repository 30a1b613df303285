"""RFC 8785 (JSON Canonicalization Scheme) bytes, fast: orjson where its output is provably the
JCS encoding, the ``rfc8785`` package (the reference used before, pure Python) everywhere else.

``dumps(value) == rfc8785.dumps(value)`` for every value, byte for byte, and it fails exactly
when that does, with the same error (the reference is what runs then); tests/audit/test_jcs.py
checks both on generated values. orjson with sorted keys writes JCS for the values ``_fast``
lets through:

- text: both write UTF-8 unescaped except ``"``, ``\\``, the two-letter escapes ``\\b \\t \\n
  \\f \\r`` and ``\\u00xx`` (lower-case hex) for the other control characters (RFC 8785 3.2.2.2);
  text with lone surrogates (not UTF-8) makes orjson raise, and the reference decides;
- integers: decimal, within +-(2^53 - 1); anything wider goes to the reference (which refuses);
- floats: not left to orjson (its shortest form differs from ECMAScript's Number::toString for
  1e21, 1e-7, 5e-324, ...): each is written by ``number`` (ECMA-262 7.1.12.1, as RFC 8785 3.2.2.3
  asks) and passed to orjson as a ``Fragment``; NaN and infinities go to the reference;
- object keys: sorted by UTF-16 code units (RFC 8785 3.2.3); orjson sorts by code point, the
  same order unless a key holds a character beyond U+FFFF, so such values go to the reference;
- types: only ``dict`` with ``str`` keys, ``list``, ``str``, ``int``, ``float``, ``bool`` and
  ``None`` exactly (no subclasses, tuples, UUIDs, ...); anything else goes to the reference.
"""

from __future__ import annotations

from typing import Any

import orjson
import rfc8785

INT_MAX = 2**53 - 1
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


class _Reference(Exception):
    """The value is outside the fast path's class: encode it with ``rfc8785``."""


def dumps(value: Any) -> bytes:
    """The RFC 8785 encoding of a JSON value (dicts, lists, str, int, float, bool, None).

    Raises ``rfc8785.CanonicalizationError`` for what RFC 8785 cannot encode: integers beyond
    +-(2^53 - 1), NaN and infinities, text that is not Unicode (lone surrogates; in a key, the
    reference's ``UnicodeEncodeError`` when it sorts), non-text keys and other types.
    """
    try:
        prepared = _fast(value)
        return orjson.dumps(prepared, option=_OPTIONS)
    except (_Reference, orjson.JSONEncodeError):
        return rfc8785.dumps(value)


def dumps_plain(value: Any) -> bytes:
    """``dumps`` for a value the caller has shown to be plain: no float, no integer beyond
    +-(2^53 - 1), only ``str`` keys and none beyond U+FFFF. orjson's sorted bytes are then the
    RFC 8785 encoding without the walk ``dumps`` makes to find floats; what orjson still refuses
    (lone surrogates, other types) goes to ``dumps``. Same errors as ``dumps``."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return dumps(value)


def _fast(node: Any) -> Any:
    """``node`` itself when orjson may encode it as it is; a copy with every float replaced by
    its JCS text (an ``orjson.Fragment``) when it holds floats. Raises ``_Reference`` when the
    fast path cannot be shown to agree with RFC 8785."""
    kind = type(node)
    if kind is str or kind is bool or node is None:
        return node
    if kind is int:
        if -INT_MAX <= node <= INT_MAX:
            return node
        raise _Reference
    if kind is float:
        return orjson.Fragment(number(node))
    if kind is dict:
        copy: dict[str, Any] | None = None
        for key, item in node.items():
            if type(key) is not str or (not key.isascii() and max(key) > "\uffff"):
                raise _Reference
            new = _fast(item)
            if new is not item:
                if copy is None:
                    copy = dict(node)
                copy[key] = new
        return node if copy is None else copy
    if kind is list:
        out: list[Any] | None = None
        for index, item in enumerate(node):
            new = _fast(item)
            if new is not item:
                if out is None:
                    out = list(node)
                out[index] = new
        return node if out is None else out
    raise _Reference


def number(value: float) -> str:
    """ECMAScript's Number::toString of a finite float (ECMA-262 7.1.12.1, RFC 8785 3.2.2.3):
    the shortest digits that round-trip (Python's ``repr`` finds the same ones), in plain
    notation from 1e-6 up to below 1e21 and in exponent notation (``1e+21``, ``1.5e-7``)
    outside it; ``-0`` is ``0``. Raises ``_Reference`` for NaN and infinities."""
    if value != value or value in (float("inf"), float("-inf")):
        raise _Reference
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    stripped = digits.lstrip("0")
    # value = 0.<stripped> x 10^n
    n = len(whole) + int(exponent or 0) - (len(digits) - len(stripped))
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    text = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{text}e{'+' if e >= 0 else '-'}{abs(e)}"

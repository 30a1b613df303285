"""The one encoding of a decision input that every engine receives.

Both engines must see the same bytes, so the input is checked (types, depth, item count, finite
numbers) and serialised here once. Integral floats up to 2^53 (and -0.0) are written as integers
(`1.0` -> `1`): equal numbers in Rego, but OPA's wasm target hashes `1.0` and `1` differently, so
`1.0 in {0, 1}` is false there and true in OPA. Lone surrogates become U+FFFD, as Go's JSON
decoder does, and the decision's input digest is computed over this text, so the digest names
what was evaluated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final


class InvalidInputError(ValueError):
    """The input cannot be encoded as a bounded JSON document."""


@dataclass(frozen=True, slots=True)
class InputLimits:
    """Bounds on an input document (bytes of its JSON text, nesting depth, total items)."""

    max_bytes: int = 64 * 1024
    max_depth: int = 32
    max_items: int = 2_000


def encode_input(input_doc: object, limits: InputLimits | None = None) -> str:
    """Encode an input document to the JSON text both engines receive.

    Raises InvalidInputError for anything that is not a bounded JSON object. The text keeps
    non-ASCII characters as they are (UTF-8), the shortest text and the one the input digest of
    every stored decision was computed over.
    """
    limits = limits or InputLimits()
    if not isinstance(input_doc, Mapping):
        raise InvalidInputError("input must be a JSON object")
    if _check_shape(input_doc, limits):
        input_doc = integral_floats_as_ints(input_doc)
    try:
        text = json.dumps(input_doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(f"input is not JSON: {exc}") from exc
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # Lone surrogates cannot travel as UTF-8; Go replaces them with U+FFFD, do the same.
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if len(text) > limits.max_bytes or len(text.encode("utf-8")) > limits.max_bytes:
        raise InvalidInputError(f"input exceeds {limits.max_bytes} bytes")
    return text


_EXACT_INTEGERS: Final = 2.0**53


def _integral(value: float) -> bool:
    return value.is_integer() and abs(value) <= _EXACT_INTEGERS


def integral_floats_as_ints(value: object) -> object:
    """`value` with every integral float of magnitude <= 2^53 (and -0.0) as an int (see above).

    Recursive: call it on documents whose depth is already bounded.
    """
    if isinstance(value, Mapping):
        return {k: integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [integral_floats_as_ints(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and _integral(value):
        return int(value)
    return value


def _check_shape(doc: object, limits: InputLimits) -> bool:
    """Iteratively check types, depth and total item count (no recursion on hostile input).

    Returns whether the document holds an integral float that `integral_floats_as_ints` changes.
    """
    integral_floats = False
    items = 0
    stack: list[tuple[object, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, Mapping):
            children: list[object] = []
            for key, child in value.items():
                if not isinstance(key, str):
                    raise InvalidInputError("object keys must be strings")
                children.append(child)
        elif isinstance(value, list | tuple):
            children = list(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidInputError("numbers must be finite")
            integral_floats = integral_floats or _integral(value)
            continue
        elif value is None or isinstance(value, str | int | bool):
            continue
        else:
            raise InvalidInputError(f"unsupported value type {type(value).__name__}")
        if depth > limits.max_depth:
            raise InvalidInputError(f"input nesting exceeds depth {limits.max_depth}")
        items += len(children)
        if items > limits.max_items:
            raise InvalidInputError(f"input has more than {limits.max_items} items")
        stack.extend((child, depth + 1) for child in children)
    return integral_floats

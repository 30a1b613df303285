"""Helpers for the operations tests: reading the Prometheus exposition."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

#: What must never be a label value: UUIDs, long hex ids, tokens, paths with ids in them.
_ID_LIKE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # UUID
    r"|[0-9a-f]{16,}"  # hex ids, digests
    r"|acp_|eyJ",  # operator tokens, JWTs
    re.IGNORECASE,
)
_VERSION_SEGMENT = re.compile(r"^v\d+$")


def _id_like(value: str) -> bool:
    if _ID_LIKE.search(value):
        return True
    # A path whose segment holds a digit (other than an API version such as v1) is a raw path,
    # not a route template.
    return value.startswith("/") and any(
        any(c.isdigit() for c in segment) and not _VERSION_SEGMENT.match(segment)
        for segment in value.split("/")
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition ``text`` (parsed by prometheus-client's own parser):
    (sample name, sorted labels) -> value."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(
    parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        value
        for (sample, found), value in parsed.items()
        if sample == name and set(labels.items()) <= set(found)
    )


def id_like_labels(parsed: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> list[str]:
    return [
        f"{name}{{{key}={value!r}}}"
        for name, labels in parsed
        for key, value in labels
        if _id_like(value)
    ]

"""Keyset (cursor) pagination: ``limit`` and ``after``, answered with ``data`` and ``has_more``.

Ids are time-ordered UUIDs, so ordering by id is creation order and a cursor is simply the last id
of the previous page; pages stay stable while rows are inserted. Repositories fetch ``limit + 1``
rows so ``has_more`` needs no count query.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import BaseModel


@dataclass(frozen=True)
class PageParams:
    limit: int
    after: uuid.UUID | None


def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page.")] = 50,
    after: Annotated[
        uuid.UUID | None, Query(description="Return items after this id (next_after).")
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, after=after)


Pagination = Annotated[PageParams, Depends(page_params)]


def page_fields(
    rows: Sequence[Any],
    limit: int,
    item: type[BaseModel],
    cursor: Callable[[Any], str] = lambda row: str(row.id),
) -> dict[str, Any]:
    """The ``data``/``has_more``/``next_after`` fields of a list answer from ``limit + 1`` rows."""
    has_more = len(rows) > limit
    rows = rows[:limit]
    return {
        "data": [item.model_validate(row) for row in rows],
        "has_more": has_more,
        "next_after": cursor(rows[-1]) if has_more and rows else None,
    }

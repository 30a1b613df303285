"""Keyset (cursor) pagination: ``limit`` and ``after``, answered with a ``Page``.

Ids are time-ordered UUIDs, so ordering by id is creation order and a cursor is simply the last id
of the previous page; pages stay stable while rows are inserted. Repositories fetch ``limit + 1``
rows so ``has_more`` needs no count query.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Self

from fastapi import Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeVar

T = TypeVar("T")
#: The cursor's type: an id (the default), a name (``str``) or a revision number (``int``); it is
#: the type of the list's ``after`` parameter, so a client passes ``next_after`` back unchanged.
C = TypeVar("C", default=uuid.UUID)


@dataclass(frozen=True)
class PageParams:
    limit: int
    after: uuid.UUID | None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page.")] = 50,
    after: Annotated[
        uuid.UUID | None, Query(description="Return items after this id (next_after).")
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, after=after)


Pagination = Annotated[PageParams, Depends(page_params)]

#: Item-schema suffixes dropped when naming a page: ``Page[AgentPublic]`` is ``AgentList``.
_ITEM_SUFFIXES = ("Public", "Record", "Summary")


_NAMED: dict[tuple[type[BaseModel], Any], type[BaseModel]] = {}


def _by_id(row: Any) -> Any:
    return row["id"] if isinstance(row, dict) else row.id


class Page(BaseModel, Generic[T, C]):
    """One page of a list, in keyset order: ``Page[ThingPublic]`` (id cursor) or
    ``Page[ThingPublic, str]`` (name cursor)."""

    model_config = ConfigDict(from_attributes=True)

    data: list[T]
    has_more: bool = Field(description="More items follow; pass next_after as after.")
    next_after: C | None = Field(
        default=None, description="Cursor for the next page (the last item's id, name or number)."
    )

    def __class_getitem__(cls, item: Any) -> Any:
        # ``Page[AgentPublic]`` is a subclass named ``AgentList``: the OpenAPI schema names (and
        # so generated clients' type names) stay what they were before lists were generic.
        parametrized: type[BaseModel] = super().__class_getitem__(item)  # type: ignore[assignment]
        first, cursor = item if isinstance(item, tuple) else (item, uuid.UUID)
        if not isinstance(first, type) or not issubclass(first, BaseModel):
            return parametrized  # Page[T] inside generic code
        named = _NAMED.get((first, cursor))
        if named is None:
            name = first.__name__
            for suffix in _ITEM_SUFFIXES:
                name = name.removesuffix(suffix)
            named = type(f"{name}List", (parametrized,), {"__module__": first.__module__})
            _NAMED[(first, cursor)] = named
        return named

    @classmethod
    def of(cls, rows: Sequence[Any], limit: int, cursor: Callable[[Any], Any] = _by_id) -> Self:
        """The page from ``limit + 1`` rows (ORM rows or dicts); ``cursor`` names a row."""
        has_more = len(rows) > limit
        rows = rows[:limit]
        return cls.model_validate(
            {
                "data": list(rows),
                "has_more": has_more,
                "next_after": cursor(rows[-1]) if has_more and rows else None,
            },
            from_attributes=True,
        )

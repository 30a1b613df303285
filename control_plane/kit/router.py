"""The router every domain uses: transactional routes, declared error answers, stable operation ids.

``Router`` is an ``APIRouter`` whose routes run in one transaction per request
(``TransactionalRoute``), whose OpenAPI entries declare the problem+json answers named in
``errors``, and whose operation ids are ``{tag}-{name}``: the router's first tag and the
endpoint's name (its function name, or ``name=`` where routes are added in a loop) without a
trailing ``_<tag noun>``, so ``list_agents`` is ``agents-list``. Generated clients name their
methods after these ids, so renaming an endpoint function renames a client method:
``tests/test_openapi.py`` catches that drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute

from control_plane.kit.errors import error_responses
from control_plane.kit.routing import TransactionalRoute


def operation_id(route: APIRoute) -> str:
    """``{tag}-{name}``: ``list_agents`` under the tag ``agents`` is ``agents-list``,
    ``list_versions`` is ``agents-list_versions`` (the tag's noun is not repeated)."""
    tag = str(route.tags[0]) if route.tags else "default"
    name = route.name
    for noun in (tag, tag.removesuffix("s")):
        if name.endswith(f"_{noun}"):
            name = name.removesuffix(f"_{noun}")
            break
    return f"{tag}-{name}"


class Router(APIRouter):
    """A domain's router. ``errors`` are the HTTP statuses every route of it may answer with a
    problem (routes add their own with ``responses=error_responses(...)``); ``transactional=False``
    is for the few routes that need no database session (health)."""

    def __init__(
        self,
        *,
        tag: str,
        prefix: str = "",
        errors: Sequence[int] = (),
        transactional: bool = True,
        **kwargs: Any,
    ) -> None:
        if transactional:
            kwargs["route_class"] = TransactionalRoute
        super().__init__(
            prefix=prefix,
            tags=[tag],
            responses=error_responses(*errors),
            generate_unique_id_function=operation_id,
            **kwargs,
        )

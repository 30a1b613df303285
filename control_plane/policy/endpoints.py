"""HTTP for policy bundles: parse, authorise, call the service.

An upload is validated by `ValidatedUploadRoute` before the route's transaction (and SQLite's
writer turn) begins: OPA takes a second or so, and other writers must not queue behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Path, Query, Request, Response
from fastapi.security import HTTPBearer
from pydantic import ValidationError

from control_plane.auth.dependencies import CurrentOperator, OperatorIdempotent, current_operator
from control_plane.auth.principals import Capability
from control_plane.kit.errors import (
    FieldError,
    UnsupportedMediaType,
    ValidationFailed,
    error_responses,
    field_errors,
)
from control_plane.kit.openapi_doc import schema_ref
from control_plane.kit.pagination import Page
from control_plane.kit.router import Router
from control_plane.kit.routing import Session, TransactionalRoute
from control_plane.kit.schemas import NAME_PATTERN
from control_plane.models import PolicyBundle, PolicyRevision
from control_plane.policy import service
from control_plane.policy.bundles import BundleArchiveError, PolicySource, read_bundle_archive
from control_plane.policy.rollout_endpoints import bundle_public
from control_plane.policy.schemas import (
    BundlePublic,
    RevisionCreate,
    RevisionPublic,
    RevisionSummary,
)
from control_plane.state import State, app_state

router = Router(tag="policies", prefix="/v1/policies", errors=(401, 403, 404, 422))

BundleName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)]
RevisionNumber = Annotated[int, Path(ge=1, le=2**31 - 1)]
_GZIP = ("application/gzip", "application/x-gzip", "application/x-tar+gzip")


def _summary(bundle: PolicyBundle, revision: PolicyRevision) -> dict[str, Any]:
    return {
        "bundle": revision.bundle,
        "revision": revision.revision,
        "digest": revision.digest,
        "active": bundle.active_revision == revision.revision,
        "modules": sorted(revision.modules),
        "created_by": revision.created_by,
        "created_at": revision.created_at,
    }


async def _source(request: Request) -> PolicySource:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if ctype in _GZIP:
        try:
            return await asyncio.to_thread(read_bundle_archive, body)
        except BundleArchiveError as exc:
            raise ValidationFailed(
                f"The bundle archive was rejected: {exc}",
                errors=[FieldError(pointer="/body", detail=str(exc))],
            ) from None
    if ctype != "application/json":
        raise UnsupportedMediaType("Send application/json or a tar.gz bundle (application/gzip).")
    try:
        parsed = RevisionCreate.model_validate_json(body)
    except ValidationError as exc:
        raise ValidationFailed(
            "The request does not match the schema; see errors.",
            errors=field_errors(exc.errors(), prefix=("body",)),
        ) from None
    return PolicySource(modules=dict(parsed.modules), data=dict(parsed.data))


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": schema_ref(RevisionCreate)},
            "application/gzip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


_bearer = HTTPBearer(auto_error=False)


class ValidatedUploadRoute(TransactionalRoute):
    """Authorise, parse and validate the upload first; then run the transactional route.

    The operator is authenticated on a read session (SQLite readers never wait for the writer)
    and must hold policy_write before anything uploaded is parsed. The endpoint authenticates
    again inside the transaction and finds the validated source on `request.state`.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        transactional = super().get_route_handler()

        async def route(request: Request) -> Response:
            async with app_state(request.app).database.read_sessionmaker() as session:
                who = await current_operator(request, session, await _bearer(request))
            who.require(Capability.policy_write)
            source = await _source(request)
            settings = app_state(request.app).settings
            request.state.validated_policy = await service.validate_upload(settings, source)
            return await transactional(request)

        return route


async def create_revision(
    bundle: BundleName, request: Request, who: CurrentOperator, session: Session, response: Response
) -> RevisionSummary:
    """Store a validated revision (JSON modules and data, or a tar.gz bundle directory)."""
    validated: service.ValidatedSource = request.state.validated_policy
    revision = await service.create_revision(session, who, bundle, validated)
    response.headers["Location"] = f"/v1/policies/{bundle}/revisions/{revision.revision}"
    stored = await service.get_revision(session, who, bundle, revision.revision)
    return RevisionSummary(**_summary(*stored))


router.add_api_route(
    "/{bundle}/revisions",
    create_revision,
    methods=["POST"],
    status_code=201,
    dependencies=[OperatorIdempotent],
    responses=error_responses(409, 415, 503),
    openapi_extra=_UPLOAD_BODY,
    route_class_override=ValidatedUploadRoute,
)


@router.get("")
async def list_bundles(
    who: CurrentOperator,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str | None, Query(max_length=63)] = None,
) -> Page[BundlePublic, str]:
    """List policy bundles."""
    rows = await service.list_bundles(session, who, after=after, limit=limit)
    return Page[BundlePublic, str].of(
        [bundle_public(b) for b in rows], limit, cursor=lambda b: b.name
    )


@router.get("/{bundle}/revisions")
async def list_revisions(
    bundle: BundleName,
    who: CurrentOperator,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Revisions below this number.")
    ] = None,
) -> Page[RevisionSummary, int]:
    """List a bundle's revisions, newest first."""
    found, rows = await service.list_revisions(session, who, bundle, after=after, limit=limit)
    return Page[RevisionSummary, int].of(
        [_summary(found, r) for r in rows], limit, cursor=lambda r: r["revision"]
    )


@router.get("/{bundle}/revisions/{revision}")
async def get_revision(
    bundle: BundleName, revision: RevisionNumber, who: CurrentOperator, session: Session
) -> RevisionPublic:
    """One revision with its sources and data."""
    found, row = await service.get_revision(session, who, bundle, revision)
    return RevisionPublic(**_summary(found, row), sources=row.modules, data=row.data)


@router.post(
    "/{bundle}/revisions/{revision}/activate",
    dependencies=[OperatorIdempotent],
    responses=error_responses(409),
)
async def activate_revision(
    bundle: BundleName,
    revision: RevisionNumber,
    who: CurrentOperator,
    session: Session,
    state: State,
) -> RevisionSummary:
    """Make this revision the one decisions use; activating an earlier one is the rollback."""
    found, row = await service.activate(session, who, bundle, revision, state.audit_context)
    return RevisionSummary(**_summary(found, row))

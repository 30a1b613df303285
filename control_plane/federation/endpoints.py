from __future__ import annotations

import json
import zlib
from typing import Annotated, Any, Final

from fastapi import Depends, Header, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.background import BackgroundTask

from control_plane.auth.dependencies import CurrentOperator, OperatorIdempotent
from control_plane.federation import points, service, sinks
from control_plane.federation.auth import PointPrincipal
from control_plane.federation.schemas import (
    EnforcementPointCreate,
    EnforcementPointCreated,
    EnforcementPointPublic,
    FederationKeys,
    LogsAccepted,
    PointCredential,
)
from control_plane.federation.tokens import POINT_SCOPES
from control_plane.kit import dberrors
from control_plane.kit.errors import FieldError, Unauthorized, ValidationFailed, error_responses
from control_plane.kit.pagination import Page, Pagination
from control_plane.kit.router import Router
from control_plane.kit.routing import Session
from control_plane.kit.schemas import NAME_PATTERN
from control_plane.state import State

router = Router(tag="federation", errors=(401, 403, 404, 422))
#: The bundle route holds no transaction: a long poll may wait up to a minute.
bundle_router = Router(tag="federation", errors=(401, 404, 422), transactional=False)

DomainName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)]
PointName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)]
LONG_POLL_TYPE: Final = "application/vnd.openpolicyagent.bundles"
MAX_LOG_BYTES: Final = 32 * 1024 * 1024

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="EnforcementPointToken",
    description="Enforcement point access token (a JWT from /oauth/token).",
)


async def _point_token(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if bearer is None or not bearer.credentials:
        error = Unauthorized("An enforcement point access token is required.")
        error.headers = {"WWW-Authenticate": 'Bearer realm="agentctl"'}
        raise error
    return bearer.credentials


PointToken = Annotated[str, Depends(_point_token)]


@router.post(
    "/v1/domains/{domain}/enforcement-points",
    status_code=201,
    dependencies=[OperatorIdempotent],
    responses=error_responses(409),
)
async def create_point(
    domain: DomainName,
    body: EnforcementPointCreate,
    who: CurrentOperator,
    session: Session,
    state: State,
    response: Response,
) -> EnforcementPointCreated:
    """Register an enforcement point; its client secret is shown in this response only."""
    created = await points.create_point(session, who, domain, body)
    public = await points.public_point(session, state, created.point)
    response.headers["Location"] = f"/v1/domains/{domain}/enforcement-points/{body.name}"
    response.headers["Cache-Control"] = "no-store"
    return EnforcementPointCreated(
        **public.model_dump(),
        credential=PointCredential(
            client_id=created.client_id,
            client_secret=created.client_secret,
            token_endpoint_auth_method=body.token_endpoint_auth_method,
            token_endpoint=state.settings.token_endpoint,
            scopes=list(POINT_SCOPES),
        ),
    )


@router.get("/v1/domains/{domain}/enforcement-points")
async def list_points(
    domain: DomainName, who: CurrentOperator, session: Session, state: State, page: Pagination
) -> Page[EnforcementPointPublic]:
    """List a domain's enforcement points with their revision, last contact and last error."""
    rows = await points.list_points(session, who, domain, after=page.after, limit=page.limit)
    shown = [await points.public_point(session, state, row) for row in rows]
    return Page[EnforcementPointPublic].of(shown, page.limit)


@router.get("/v1/domains/{domain}/enforcement-points/{name}")
async def get_point(
    domain: DomainName, name: PointName, who: CurrentOperator, session: Session, state: State
) -> EnforcementPointPublic:
    """Get one enforcement point."""
    point = await points.get_point(session, who, domain, name)
    return await points.public_point(session, state, point)


@router.get(
    "/v1/domains/{domain}/enforcement-points/{name}/opa-config",
    responses={200: {"content": {"application/yaml": {}}, "description": "OPA configuration."}},
    response_class=Response,
)
async def get_opa_config(
    domain: DomainName, name: PointName, who: CurrentOperator, session: Session, state: State
) -> Response:
    """A ready OPA configuration for the point (the secret from AGENTCTL_OPA_CLIENT_SECRET)."""
    text = await points.opa_config_text(session, state, who, domain, name)
    return Response(content=text, media_type="application/yaml")


@bundle_router.get(
    "/v1/bundles/{domain}",
    responses={
        200: {"content": {"application/gzip": {}}, "description": "The signed OPA bundle."},
        304: {"description": "Not modified (If-None-Match is the current revision)."},
    },
    response_class=Response,
)
async def get_bundle(
    request: Request,
    domain: DomainName,
    token: PointToken,
    state: State,
    if_none_match: Annotated[str | None, Header()] = None,
    prefer: Annotated[
        str | None, Header(description="wait=N: hold up to N s (<= 60) for a new revision.")
    ] = None,
) -> Response:
    """The domain's signed OPA bundle (enforcement point token of that domain, bundles:read)."""
    try:
        answer = await service.fetch_bundle(
            state,
            token,
            domain,
            if_none_match=if_none_match,
            prefer=prefer,
            gone=request.is_disconnected,
        )
    except Exception as exc:  # outside TransactionalRoute: classify database failures here
        problem = dberrors.report(exc, request)
        if problem is None or problem is exc:
            raise
        raise problem from exc
    # The point's last contact is written once the answer is sent (it never delays a revision).
    contact = BackgroundTask(service.record_contact, state, answer)
    headers = {"ETag": f'"{answer.revision}"', "Cache-Control": "no-cache"}
    long_poll = prefer is not None and service.wait_seconds(prefer) > 0
    if answer.archive is None:
        if long_poll:
            headers["Content-Type"] = LONG_POLL_TYPE
        return Response(status_code=304, headers=headers, background=contact)
    return Response(
        content=answer.archive,
        media_type=LONG_POLL_TYPE if long_poll else "application/gzip",
        headers=headers,
        background=contact,
    )


@bundle_router.get("/v1/federation/keys")
async def get_keys(request: Request, state: State) -> FederationKeys:
    """The public key(s) that sign bundles: a JWKS and PEM for OPA's `keys` configuration."""
    try:
        return await service.federation_keys(state)
    except Exception as exc:
        problem = dberrors.report(exc, request)
        if problem is None or problem is exc:
            raise
        raise problem from exc


async def _json_body(request: Request) -> Any:
    """The JSON body, gunzipped when it is gzip (OPA compresses its uploads), bounded."""
    raw = await request.body()
    if request.headers.get("content-encoding", "").lower() == "gzip" or raw[:2] == b"\x1f\x8b":
        try:
            decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            raw = decompressor.decompress(raw, MAX_LOG_BYTES)
        except zlib.error:
            raise ValidationFailed(
                "The body is not valid gzip.",
                errors=[FieldError(pointer="/body", detail="invalid gzip")],
            ) from None
        if decompressor.unconsumed_tail:
            raise ValidationFailed(
                f"The body unpacks to more than {MAX_LOG_BYTES} bytes.",
                errors=[FieldError(pointer="/body", detail="too large")],
            )
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ValidationFailed(
            "The body is not JSON.", errors=[FieldError(pointer="/body", detail="invalid JSON")]
        ) from None


async def _events(request: Request) -> list[Any]:
    body = await _json_body(request)
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, list):
        raise ValidationFailed(
            "The body must be a JSON array of decision-log events.",
            errors=[FieldError(pointer="/body", detail="not an array")],
        )
    return body


_LOGS_BODY = {
    "requestBody": {
        "required": True,
        "description": "OPA decision-log events (a JSON array, gzip with Content-Encoding: gzip "
        "or plain).",
        "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
    }
}


@router.post("/v1/logs", openapi_extra=_LOGS_BODY)
async def upload_logs(
    request: Request, token: PointToken, session: Session, state: State
) -> LogsAccepted:
    """Decision logs of an enforcement point (logs:write): each event a decision + audit record."""
    principal: PointPrincipal = await sinks.point_principal(session, state, token, "logs:write")
    events = await _events(request)
    return await sinks.ingest_logs(session, state, principal, events)


_STATUS_BODY = {
    "requestBody": {
        "required": True,
        "description": "An OPA status report (or the SDK's same subset).",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


@router.post("/v1/status", status_code=204, openapi_extra=_STATUS_BODY)
async def report_status(
    request: Request, token: PointToken, session: Session, state: State
) -> None:
    """Status report of an enforcement point (status:write): revision, last error, contact."""
    principal = await sinks.point_principal(session, state, token, "status:write")
    report = await _json_body(request)
    if not isinstance(report, dict):
        raise ValidationFailed(
            "The body must be a JSON object (an OPA status report).",
            errors=[FieldError(pointer="/body", detail="not an object")],
        )
    await sinks.ingest_status(session, principal, report)

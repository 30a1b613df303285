"""The error model: typed domain errors rendered as RFC 9457 problem+json.

Every expected failure is a ``ProblemError`` subclass with a stable ``code`` from the closed set in
``ErrorCode``. One set of exception handlers (``install_error_handlers``) renders them, request
validation failures (422 with one JSON pointer per field), routing errors, and, as a last resort,
unexpected exceptions (500 without internals). Database availability failures become 503s
through ``control_plane.kit.dberrors.install``, which the app factory calls after this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

log = structlog.get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
# nginx's "client closed request": the status logged when the client left before its answer.
CLIENT_CLOSED_REQUEST = 499


class ErrorCode(StrEnum):
    invalid_request = "invalid_request"
    validation_failed = "validation_failed"
    unauthorized = "unauthorized"
    forbidden = "forbidden"
    not_found = "not_found"
    method_not_allowed = "method_not_allowed"
    conflict = "conflict"
    already_exists = "already_exists"
    invalid_state_transition = "invalid_state_transition"
    precondition_failed = "precondition_failed"
    precondition_required = "precondition_required"
    payload_too_large = "payload_too_large"
    unsupported_media_type = "unsupported_media_type"
    idempotency_key_reused = "idempotency_key_reused"
    idempotency_key_in_use = "idempotency_key_in_use"
    idempotency_key_limit = "idempotency_key_limit"
    rate_limited = "rate_limited"
    invalid_client = "invalid_client"
    invalid_scope = "invalid_scope"
    unsupported_grant_type = "unsupported_grant_type"
    unauthorized_client = "unauthorized_client"
    insufficient_scope = "insufficient_scope"
    service_unavailable = "service_unavailable"
    database_unavailable = "database_unavailable"
    internal_error = "internal_error"


def problem_type(code: str) -> str:
    return f"urn:agentctl:problem:{code}"


class FieldError(BaseModel):
    pointer: str = Field(description="JSON pointer (RFC 6901) into the request, e.g. /body/name.")
    detail: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error answer carries them."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: ErrorCode
    errors: list[FieldError] | None = None
    request_id: str | None = Field(
        default=None, description="The request's X-Request-ID, as in the response header."
    )


class ProblemError(Exception):
    status: int = 400
    code: ErrorCode = ErrorCode.invalid_request
    title: str = "Invalid request"
    # OAuth endpoints answer application/json (RFC 6749 section 5.2) with the same members.
    media_type: str = PROBLEM_CONTENT_TYPE

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[FieldError] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.headers = dict(headers or {})
        self.errors = list(errors) if errors else None
        # RFC 9457 extension members, e.g. OAuth's "error" on the token endpoint.
        self.extensions = dict(extensions or {})


class InvalidRequest(ProblemError):
    pass


class ValidationFailed(ProblemError):
    status = 422
    code = ErrorCode.validation_failed
    title = "Validation failed"


class Unauthorized(ProblemError):
    status = 401
    code = ErrorCode.unauthorized
    title = "Authentication required"

    def __init__(self, detail: str | None = None, *, error: str = "invalid_token") -> None:
        # RFC 6750 section 3: a 401 names the scheme and why the token was refused.
        super().__init__(
            detail, headers={"WWW-Authenticate": f'Bearer realm="agentctl", error="{error}"'}
        )


class Forbidden(ProblemError):
    status = 403
    code = ErrorCode.forbidden
    title = "Forbidden"


class NotFound(ProblemError):
    status = 404
    code = ErrorCode.not_found
    title = "Not found"


class Conflict(ProblemError):
    status = 409
    code = ErrorCode.conflict
    title = "Conflict"


class AlreadyExists(Conflict):
    code = ErrorCode.already_exists
    title = "Already exists"


class InvalidStateTransition(Conflict):
    code = ErrorCode.invalid_state_transition
    title = "Invalid state transition"


class PreconditionFailed(ProblemError):
    status = 412
    code = ErrorCode.precondition_failed
    title = "Precondition failed"


class PreconditionRequired(ProblemError):
    status = 428
    code = ErrorCode.precondition_required
    title = "Precondition required"


class PayloadTooLarge(ProblemError):
    status = 413
    code = ErrorCode.payload_too_large
    title = "Payload too large"


class UnsupportedMediaType(ProblemError):
    status = 415
    code = ErrorCode.unsupported_media_type
    title = "Unsupported media type"


class IdempotencyKeyReused(ProblemError):
    status = 422
    code = ErrorCode.idempotency_key_reused
    title = "Idempotency key reused with a different request"


class IdempotencyKeyInUse(ProblemError):
    status = 409
    code = ErrorCode.idempotency_key_in_use
    title = "A request with this idempotency key is in progress"


class TooManyRequests(ProblemError):
    """429 with ``Retry-After`` (RFC 6585 section 4; RFC 9110 section 10.2.3): seconds, >= 1."""

    status = 429
    code = ErrorCode.rate_limited
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = max(1, retry_after)


class IdempotencyKeyLimit(TooManyRequests):
    code = ErrorCode.idempotency_key_limit
    title = "Too many live idempotency keys"


class ServiceUnavailable(ProblemError):
    status = 503
    code = ErrorCode.service_unavailable
    title = "Service unavailable"


_STATUS_CODES: dict[int, tuple[ErrorCode, str]] = {
    400: (ErrorCode.invalid_request, "Invalid request"),
    401: (ErrorCode.unauthorized, "Authentication required"),
    403: (ErrorCode.forbidden, "Forbidden"),
    404: (ErrorCode.not_found, "Not found"),
    405: (ErrorCode.method_not_allowed, "Method not allowed"),
    409: (ErrorCode.conflict, "Conflict"),
    412: (ErrorCode.precondition_failed, "Precondition failed"),
    413: (ErrorCode.payload_too_large, "Payload too large"),
    415: (ErrorCode.unsupported_media_type, "Unsupported media type"),
    422: (ErrorCode.validation_failed, "Validation failed"),
    428: (ErrorCode.precondition_required, "Precondition required"),
    429: (ErrorCode.rate_limited, "Too many requests"),
    503: (ErrorCode.service_unavailable, "Service unavailable"),
}


def problem_body(
    *,
    status: int,
    code: ErrorCode,
    title: str,
    detail: str | None,
    instance: str | None,
    errors: Sequence[FieldError] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The RFC 9457 body (a JSON object) of every problem answer, also those sent below FastAPI
    (middleware) or stored for replay (idempotency). Extensions never override standard members."""
    body = Problem(
        type=problem_type(code),
        title=title,
        status=status,
        detail=detail,
        instance=instance,
        code=code,
        errors=list(errors) if errors else None,
        # Bound by RequestIdMiddleware for the request being answered.
        request_id=structlog.contextvars.get_contextvars().get("request_id"),
    )
    content = body.model_dump(mode="json", exclude_none=True)
    for name, value in (extensions or {}).items():
        content.setdefault(name, value)
    return content


def problem_response(
    *,
    status: int,
    code: ErrorCode,
    title: str,
    detail: str | None,
    instance: str | None,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
    media_type: str = PROBLEM_CONTENT_TYPE,
) -> JSONResponse:
    """``problem_body`` as a response; ``media_type`` is application/problem+json except for
    OAuth errors (application/json, RFC 6749 section 5.2)."""
    content = problem_body(
        status=status,
        code=code,
        title=title,
        detail=detail,
        instance=instance,
        errors=errors,
        extensions=extensions,
    )
    return JSONResponse(
        content,
        status_code=status,
        media_type=media_type,
        headers=dict(headers or {}),
    )


def _pointer(loc: Sequence[Any]) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in loc]
    return "/" + "/".join(parts)


def _validation_errors(exc: RequestValidationError) -> list[FieldError]:
    return field_errors(exc.errors())


def field_errors(errors: Sequence[Any], prefix: Sequence[str] = ()) -> list[FieldError]:
    """Per-field errors (pydantic's error dicts) as JSON pointers, optionally under ``prefix``."""
    out: list[FieldError] = []
    for err in errors:
        loc = (*prefix, *err.get("loc", ()))
        message = str(err.get("msg", "invalid value"))
        if err.get("type") == "extra_forbidden":
            message = "unknown field"
        out.append(FieldError(pointer=_pointer(loc), detail=message))
    return out


def install_error_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(
            status=exc.status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            instance=request.url.path,
            errors=exc.errors,
            headers=exc.headers,
            extensions=exc.extensions,
            media_type=exc.media_type,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _validation_errors(exc)
        malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
        return problem_response(
            status=422,
            code=ErrorCode.validation_failed,
            title="Validation failed",
            detail="The request body is not valid JSON."
            if malformed
            else "The request does not match the schema; see errors.",
            instance=request.url.path,
            errors=errors,
        )

    async def on_disconnect(request: Request, exc: Exception) -> Response:
        # The client went away while its body was being read (closed, killed, timed out):
        # nothing was validated, so nothing was written, and no one is left to answer. Logged
        # as what it is; 499 is the access log's "client closed request" (nginx's convention).
        log.info("client_disconnected", path=request.url.path, method=request.method)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc.__cause__, ClientDisconnect):
            return await on_disconnect(request, exc)  # FastAPI's "error parsing the body"
        code, title = _STATUS_CODES.get(exc.status_code, (ErrorCode.invalid_request, "Error"))
        if exc.status_code >= 500:
            code, title = ErrorCode.internal_error, "Internal error"
        detail = (
            exc.detail
            if isinstance(exc.detail, str) and exc.detail.lower() != title.lower()
            else None
        )
        # FastAPI's "There was an error parsing the body", said by what went wrong.
        if isinstance(exc.__cause__, UnicodeDecodeError):
            detail = "The request body is not JSON text (UTF-8, UTF-16 or UTF-32)."
        elif isinstance(exc.__cause__, RecursionError):
            detail = "The request body is nested too deeply to read."
        headers = dict(exc.headers or {})
        return problem_response(
            status=exc.status_code,
            code=code,
            title=title,
            detail=detail,
            instance=request.url.path,
            headers=headers,
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette answers from its outermost middleware, after RequestIdMiddleware has unbound
        # the request id: bound again from the scope, so the answer and the log line carry it.
        request_id = request.scope.get("state", {}).get("request_id")
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            log.exception("unhandled_error", path=request.url.path, error_type=type(exc).__name__)
            return problem_response(
                status=500,
                code=ErrorCode.internal_error,
                title="Internal error",
                detail="An unexpected error occurred; it has been logged under this request_id.",
                instance=request.url.path,
                headers={"X-Request-ID": request_id} if request_id else None,
            )

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(Exception, on_unexpected)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries declaring problem+json answers for the given statuses."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        _, title = _STATUS_CODES.get(status, (ErrorCode.invalid_request, "Error"))
        out[status] = {
            "model": Problem,
            "description": title,
            "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        if status in (429, 503):
            out[status]["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying (RFC 9110 section 10.2.3).",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
    return out

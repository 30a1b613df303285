"""FastAPI dependencies that authenticate operators by bearer token.

Failed operator-token authentications are limited per source address
(``operator_source_failure_limit`` per ``auth_failure_window_seconds``, ``kit.ratelimit``):
past the limit every request from that address that presents a token answers 429 with
``Retry-After`` until the window ends, before its token is looked at. A request without any
token is neither checked nor counted (it answers 401 at once).
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from control_plane.auth.principals import OPERATOR_TOKEN_PREFIX, OperatorPrincipal
from control_plane.kit.database import kit_state
from control_plane.kit.errors import TooManyRequests, Unauthorized
from control_plane.kit.ratelimit import FailureLimiter, Limit, source_address
from control_plane.kit.routing import Session, idempotent
from control_plane.operators import service as operators

log = structlog.get_logger(__name__)

_bearer = HTTPBearer(
    auto_error=False, scheme_name="OperatorToken", description="Operator token (acp_op_...)."
)


class MissingCredentials(Unauthorized):
    def __init__(self) -> None:
        super().__init__("A bearer token is required.", error="invalid_request")
        # RFC 6750 section 3.1: no error code when the request carried no credentials at all.
        self.headers = {"WWW-Authenticate": 'Bearer realm="agentctl"'}


async def current_operator(
    request: Request,
    session: Session,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> OperatorPrincipal:
    if credentials is None or not credentials.credentials:
        raise MissingCredentials()
    settings = kit_state(request.app).settings
    limiter = FailureLimiter(settings.auth_failure_window_seconds)
    source = source_address(request)
    limits = [Limit(f"operator-source:{source}", settings.operator_source_failure_limit)]
    retry_after = await limiter.check(session, limits)
    if retry_after is not None:
        log.info("operator_authentication_limited", source=source, retry_after=retry_after)
        raise TooManyRequests(
            "Too many failed authentications from this address; retry later.",
            retry_after=retry_after,
        )
    token = credentials.credentials
    principal = None
    if token.startswith(OPERATOR_TOKEN_PREFIX) and len(token) <= 256:
        principal = await operators.authenticate(session, token)
    if principal is None:
        limiter.failed(session, limits)
        log.info("operator_authentication_failed", source=source)
        raise Unauthorized("The token is not a valid operator token.")
    request.state.principal_key = principal.key
    return principal


CurrentOperator = Annotated[OperatorPrincipal, Depends(current_operator)]

#: Route dependency for operator POSTs: authenticate, then honour ``Idempotency-Key``.
OperatorIdempotent = idempotent(current_operator)

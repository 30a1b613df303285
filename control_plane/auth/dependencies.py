"""FastAPI dependencies that authenticate operators by bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from control_plane.auth.principals import OPERATOR_TOKEN_PREFIX, OperatorPrincipal
from control_plane.kit.errors import Unauthorized
from control_plane.kit.routing import Session, idempotent
from control_plane.operators import service as operators

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
    token = credentials.credentials
    if not token.startswith(OPERATOR_TOKEN_PREFIX) or len(token) > 256:
        raise Unauthorized("The token is not a valid operator token.")
    principal = await operators.authenticate(session, token)
    if principal is None:
        raise Unauthorized("The token is not a valid operator token.")
    request.state.principal_key = principal.key
    return principal


CurrentOperator = Annotated[OperatorPrincipal, Depends(current_operator)]

#: Route dependency for operator POSTs: authenticate, then honour ``Idempotency-Key``.
OperatorIdempotent = idempotent(current_operator)

"""Console sessions: an operator token exchanged for a server-side session, and its CSRF token.

The session id (256 random bits) lives only in the browser's cookie; the database keeps its
SHA-256, the operator and the expiry. Each request maps the cookie back to the operator's
principal through ``operators.active_principal``, so a revoked operator loses its sessions at
once, and every page then calls the same domain services, with the same role and domain checks,
as the API. The CSRF token is a synchronizer token derived from the session id
(HMAC-SHA256(session id, label)): only a holder of the session can compute it, it changes with
every session, and there is nothing more to store.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.auth.principals import OPERATOR_TOKEN_PREFIX, OperatorPrincipal
from control_plane.console import repository
from control_plane.kit.time import utcnow
from control_plane.models import ConsoleSession
from control_plane.operators import service as operators

#: How long a console session lasts after sign-in (absolute, not sliding).
SESSION_TTL = timedelta(hours=8)
_CSRF_LABEL = b"agentctl-console-csrf-v1"


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    session_id: str
    principal: OperatorPrincipal
    expires_at: datetime


async def sign_in(session: AsyncSession, token: str) -> SignedIn | None:
    """A new session for a valid, unrevoked operator token (flush only), or None."""
    if not token.startswith(OPERATOR_TOKEN_PREFIX) or len(token) > 256:
        return None
    principal = await operators.authenticate(session, token)
    if principal is None:
        return None
    session_id = secrets.token_urlsafe(32)
    expires_at = utcnow() + SESSION_TTL
    await repository.add(
        session,
        ConsoleSession(id_hash=_hash(session_id), operator_id=principal.id, expires_at=expires_at),
    )
    return SignedIn(session_id=session_id, principal=principal, expires_at=expires_at)


async def principal_of(session: AsyncSession, session_id: str) -> OperatorPrincipal | None:
    """The operator behind a live session (not expired, not signed out, operator not revoked)."""
    if not session_id or len(session_id) > 128:
        return None
    row = await repository.find_live(session, _hash(session_id), utcnow())
    if row is None:
        return None
    return await operators.active_principal(session, row.operator_id)


async def sign_out(session: AsyncSession, session_id: str) -> None:
    """Revoke the session server-side (flush only); the cookie is then worthless."""
    await repository.revoke(session, _hash(session_id), utcnow())


def csrf_token(session_id: str) -> str:
    """The session's synchronizer token (64 hex digits)."""
    return hmac.new(session_id.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_valid(session_id: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(
        csrf_token(session_id).encode(), presented.encode()
    )

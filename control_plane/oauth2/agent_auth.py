"""Authenticating agents on protected routes.

Each call verifies the access token (signature and claims; cached by token hash for the token's
remaining lifetime) and then re-checks what can change under a valid token: the agent's status,
the credential's revocation and expiry, the token's own revocation, and the bound version. That
state is read from the database, cached for at most ``auth_state_ttl_seconds`` (at most 1 s), so a
suspension or revocation on any replica is enforced everywhere within that bound.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, cast

from cachetools import TTLCache
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.config import Settings
from control_plane.crypto.keystore import KeyStore
from control_plane.kit.errors import ErrorCode, Forbidden, Unauthorized
from control_plane.kit.routing import Session
from control_plane.models import Agent
from control_plane.oauth2 import repository
from control_plane.oauth2.auth_state import AuthState
from control_plane.oauth2.cache import VerifiedTokenCache, verify_access_token_cached
from control_plane.oauth2.service import auth_state_problem
from control_plane.oauth2.tokens import TokenError, VerifiedAccessToken, verify_access_token
from control_plane.state import app_state

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AgentToken",
    description="Agent access token (a JWT from /oauth/token).",
)
_STATE_CACHE_MAX = 50_000
_MISSING = object()


@dataclass(frozen=True)
class AgentPrincipal:
    agent: Agent
    client_id: uuid.UUID
    scopes: frozenset[str]
    token: VerifiedAccessToken

    @property
    def key(self) -> str:
        return f"agent:{self.agent.id}/{self.client_id}"


class InsufficientScope(Forbidden):
    code = ErrorCode.insufficient_scope
    title = "Insufficient scope"

    def __init__(self, scope: str) -> None:
        super().__init__(
            f"The token lacks the scope {scope}.",
            headers={
                "WWW-Authenticate": f'Bearer realm="agentctl", error="insufficient_scope", '
                f'scope="{scope}"'
            },
        )


class AgentAuthenticator:
    def __init__(self, keystore: KeyStore, settings: Settings) -> None:
        self._keystore = keystore
        self._settings = settings
        self._cache = (
            VerifiedTokenCache(max_entries=settings.token_cache_size)
            if settings.token_cache_size > 0
            else None
        )
        # (client id, jti) -> the state read at most auth_state_ttl_seconds ago
        self._state: TTLCache[tuple[uuid.UUID, str], AuthState | None] | None = (
            TTLCache(maxsize=_STATE_CACHE_MAX, ttl=settings.auth_state_ttl_seconds)
            if settings.auth_state_ttl_seconds > 0
            else None
        )

    def _verify(self, ring: Any, token: str) -> VerifiedAccessToken:
        kwargs: dict[str, Any] = {
            "issuer": self._settings.issuer_url,
            "audience": self._settings.token_audience,
            "leeway": self._settings.token_leeway_seconds,
        }
        if self._cache is not None:
            return verify_access_token_cached(self._cache, ring, token, **kwargs)
        return verify_access_token(ring, token, **kwargs)

    async def verify(self, token: str) -> VerifiedAccessToken:
        ring = await self._keystore.ring()
        try:
            verified = self._verify(ring, token)
        except TokenError as exc:
            if exc.reason != "unknown_kid":
                raise
            # A key rotated on another replica: reload (rate-limited) and try once more.
            verified = self._verify(await self._keystore.ring(force=True), token)
        # The leeway is for other verifiers' clocks: the issuer's own token ends at its exp.
        if verified.expires_at <= time.time():
            raise TokenError("expired")
        return verified

    async def _auth_state(
        self, session: AsyncSession, client_id: uuid.UUID, agent_id: uuid.UUID, jti: str
    ) -> AuthState | None:
        key = (client_id, jti)
        if self._state is not None:
            # One lookup: between ``key in`` and ``[key]`` the entry can expire (KeyError, a 500).
            found = self._state.get(key, _MISSING)
            if found is not _MISSING:
                return cast(AuthState | None, found)
        state = await repository.auth_state(session, client_id, agent_id, jti)
        if self._state is not None:
            self._state[key] = state
        return state

    async def authenticate(
        self,
        session: AsyncSession,
        token: str,
        read_state: Callable[[uuid.UUID, uuid.UUID, str], Awaitable[AuthState | None]]
        | None = None,
    ) -> AgentPrincipal:
        """The agent behind ``token`` (a JWT access token), or ``Unauthorized`` (401): an
        invalid or expired token, an unknown credential, or a state ``auth_state_problem``
        refuses. ``read_state(client_id, agent_id, jti)``, when given, reads that state instead
        of this authenticator (fresh each time, no ``auth_state_ttl_seconds`` reuse)."""
        try:
            verified = await self.verify(token)
        except TokenError as exc:
            raise Unauthorized(f"The access token is invalid ({exc.reason}).") from None
        try:
            client_id = uuid.UUID(verified.client_id)
            agent_id = uuid.UUID(verified.subject)
        except ValueError:
            raise Unauthorized("The access token is invalid (claims).") from None
        if read_state is not None:
            state = await read_state(client_id, agent_id, verified.jti)
        else:
            state = await self._auth_state(session, client_id, agent_id, verified.jti)
        if state is None:
            raise Unauthorized("The access token is invalid (unknown client).")
        problem = auth_state_problem(state)
        if problem is not None:
            raise Unauthorized(f"The access token is no longer valid: {problem}.")
        return AgentPrincipal(
            agent=state.agent,
            client_id=client_id,
            scopes=frozenset(verified.scopes),
            token=verified,
        )


StateReader = Callable[
    [Request, AsyncSession, uuid.UUID, uuid.UUID, str], Awaitable[AuthState | None]
]
"""Reads authentication's state for a route that reads it with more of its own in one statement
(the decision hot path): ``(request, session, client_id, agent_id, jti)``; None when the
credential is not the agent's."""


def agent_dependency(
    read_state: StateReader | None = None,
) -> Callable[..., Coroutine[Any, Any, AgentPrincipal]]:
    """The dependency that authenticates the calling agent by its bearer token (401 otherwise);
    with ``read_state``, authentication's state is read through it."""

    async def current_agent(
        request: Request,
        session: Session,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> AgentPrincipal:
        if credentials is None or not credentials.credentials:
            error = Unauthorized("An agent access token is required.")
            error.headers = {"WWW-Authenticate": 'Bearer realm="agentctl"'}
            raise error
        authenticator = app_state(request.app).agent_authenticator
        reader = None if read_state is None else functools.partial(read_state, request, session)
        principal = await authenticator.authenticate(session, credentials.credentials, reader)
        request.state.principal_key = principal.key
        return principal

    return current_agent


current_agent = agent_dependency()
CurrentAgent = Annotated[AgentPrincipal, Depends(current_agent)]


def require_scope(
    scope: str, read_state: StateReader | None = None
) -> Callable[..., Coroutine[Any, Any, AgentPrincipal]]:
    """A dependency that authenticates the agent and requires ``scope`` (403 otherwise);
    ``read_state`` as in ``agent_dependency``."""
    authenticate = current_agent if read_state is None else agent_dependency(read_state)

    async def dependency(agent: AgentPrincipal = Depends(authenticate)) -> AgentPrincipal:
        if scope not in agent.scopes:
            raise InsufficientScope(scope)
        return agent

    return dependency

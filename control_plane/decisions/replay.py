"""When a decision may be replayed by its ``Idempotency-Key``, and the record of each replay.

A decision is an authorization: it holds only while what it was decided on holds. The answer
stored under an ``Idempotency-Key`` is therefore tied to a fingerprint of everything the
control plane vouched for when it decided: the agent's registry row (revision, status,
autonomy level, domain), its active version (id, state), the credential that asked (id, scopes,
expiry, revocation) and the active revision of the decision bundle. A repeat whose fingerprint
differs is decided again and recorded as a new decision; a repeat whose fingerprint matches
replays the stored answer and leaves a ``DecisionReplay`` row (decision id, replayed at).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from fastapi import Request
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.decisions import repository
from control_plane.models import DecisionReplay, IdempotencyRecord
from control_plane.oauth2.agent_auth import AgentPrincipal
from control_plane.state import app_state


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class DecisionReplayGuard:
    """The ``ReplayGuard`` of ``POST /v1/decisions`` (its bundle is the runtime's)."""

    async def fingerprint(self, request: Request, session: AsyncSession, principal: Any) -> str:
        """sha256 hex (64 characters) over the vouched state, read fresh from the database."""
        if not isinstance(principal, AgentPrincipal):  # the route's dependency always gives one
            raise TypeError("decision replay guard needs an agent principal")
        bundle = app_state(request.app).policy_runtime.bundle
        state = await repository.vouched_state(
            session, principal.agent.id, principal.client_id, bundle
        )
        agent, version, credential, revision = state
        document = {
            "agent": None
            if agent is None
            else [agent.revision, agent.status, agent.autonomy_level, agent.domain, agent.name],
            "version": None if version is None else [str(version.id), version.state],
            "credential": None
            if credential is None
            else [
                str(credential.id),
                sorted(credential.scopes),
                _iso(credential.expires_at),
                _iso(credential.revoked_at),
                str(credential.version_id) if credential.version_id else None,
            ],
            "policy": [bundle, revision],
        }
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    async def replayed(
        self,
        request: Request,
        session: AsyncSession,
        principal: Any,
        key: str,
        record: IdempotencyRecord,
    ) -> None:
        """Record the replay of the decision named in the stored answer."""
        if not isinstance(principal, AgentPrincipal):
            raise TypeError("decision replay guard needs an agent principal")
        try:
            decision_id = uuid.UUID(str(json.loads(record.response_body)["decision_id"]))
        except (ValueError, KeyError, TypeError):
            return  # a stored error answer names no decision; nothing was authorised
        await repository.add_replay(
            session,
            DecisionReplay(
                decision_id=decision_id,
                domain=principal.agent.domain,
                agent_id=principal.agent.id,
                client_id=principal.client_id,
                idempotency_key=key,
            ),
        )

"""What authentication re-checks under a valid access token (read by ``oauth2.repository``, and
by the decision hot path with the rest of a decision's state), and the parts of the statement
both read it with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam
from sqlalchemy import select as sa_select
from sqlmodel import col

from control_plane.models import Agent, Credential, Domain


@dataclass(frozen=True)
class AuthState:
    """What a protected call must re-check on every request, in one read: the agent's row, the
    credential's revocation and expiry (an aware UTC datetime or None), the state of the version
    the credential is bound to (None when unbound), the token's revocation (by ``jti``) and the
    domain's kill switch (``oauth2.service.auth_state_problem`` judges them)."""

    agent: Agent
    credential_revoked: bool
    credential_expires_at: datetime | None
    bound_version_state: str | None
    token_revoked: bool
    domain_suspended: bool = False


def credential_of_agent() -> Any:
    """Join condition: the credential ``:client_id``, only if it is the agent's."""
    return and_(
        col(Credential.id) == bindparam("client_id"), col(Credential.agent_id) == col(Agent.id)
    )


def domain_suspended() -> Any:
    """Column: whether the agent's domain has its kill switch on."""
    return (
        sa_select(col(Domain.suspended_at).is_not(None))
        .where(col(Domain.name) == col(Agent.domain))
        .scalar_subquery()
    )

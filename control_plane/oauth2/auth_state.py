"""What authentication re-checks under a valid access token (read by ``oauth2.repository``, and
by the decision hot path with the rest of a decision's state), and the parts of the statement
both read it with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from sqlalchemy import and_, bindparam
from sqlalchemy import select as sa_select
from sqlmodel import col

from control_plane.kit.inserts import table_of
from control_plane.kit.time import aware
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

    @classmethod
    def from_columns(
        cls,
        agent: Agent,
        revoked_at: datetime | None,
        expires_at: datetime | None,
        bound_state: str | None,
        token_revoked: Any,
        suspended: Any,
    ) -> Self:
        """From the columns a state read selects: the credential's ``revoked_at`` and
        ``expires_at`` (naive UTC on SQLite), the bound version's state, whether the token's
        jti is revoked (``exists``) and ``domain_suspended()``."""
        return cls(
            agent=agent,
            credential_revoked=revoked_at is not None,
            credential_expires_at=aware(expires_at) if expires_at is not None else None,
            bound_version_state=bound_state,
            token_revoked=bool(token_revoked),
            domain_suspended=bool(suspended),
        )


AGENT_COLUMNS = tuple(table_of(Agent).columns)
"""The agent's columns, first in both state reads' rows (``agent_from``)."""
_AGENT_NAMES = tuple(c.name for c in AGENT_COLUMNS)


def agent_from(row: Any) -> Agent:
    """The agent of a row that starts with ``AGENT_COLUMNS``."""
    return Agent(**dict(zip(_AGENT_NAMES, row[: len(_AGENT_NAMES)], strict=True)))


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

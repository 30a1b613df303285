"""What authentication re-checks under a valid access token (read by ``oauth2.repository``, and
by the decision hot path with the rest of a decision's state)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from control_plane.models import Agent


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

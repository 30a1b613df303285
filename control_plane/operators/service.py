"""Creating and revoking operators, and the bootstrap platform_admin."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.auth.principals import (
    Capability,
    OperatorPrincipal,
    Role,
    hash_token,
    new_operator_token,
)
from control_plane.domains import service as domains
from control_plane.kit.errors import FieldError, InvalidStateTransition, NotFound, ValidationFailed
from control_plane.kit.time import utcnow
from control_plane.models import Operator
from control_plane.operators import repository

log = structlog.get_logger(__name__)

BOOTSTRAP_NAME = "bootstrap-admin"


@dataclass(frozen=True)
class NewOperator:
    operator: Operator
    token: str


async def authenticate(session: AsyncSession, token: str) -> OperatorPrincipal | None:
    """The principal of a valid, unrevoked operator token, or None."""
    operator = await repository.find_active_by_token_hash(session, hash_token(token))
    if operator is None:
        return None
    return OperatorPrincipal(
        id=operator.id,
        name=operator.name,
        role=Role(operator.role),
        domains=frozenset(operator.domains),
    )


async def active_principal(
    session: AsyncSession, operator_id: uuid.UUID
) -> OperatorPrincipal | None:
    """The principal of an operator that is not revoked, or None (the console's sessions hold
    an operator id: revoking the operator ends its sessions at their next request)."""
    operator = await repository.get(session, operator_id)
    if operator is None or operator.revoked_at is not None:
        return None
    return OperatorPrincipal(
        id=operator.id,
        name=operator.name,
        role=Role(operator.role),
        domains=frozenset(operator.domains),
    )


async def create(
    session: AsyncSession, *, name: str, role: Role, domain_names: Sequence[str]
) -> NewOperator:
    """Create an operator and its token. The caller shows the token once; only its hash is kept."""
    for i, name_ in enumerate(domain_names):
        if not await domains.exists(session, name_):
            raise ValidationFailed(
                f"The domain '{name_}' does not exist.",
                errors=[FieldError(pointer=f"/body/domains/{i}", detail="unknown domain")],
            )
    token = new_operator_token()
    operator = Operator(
        name=name,
        role=role.value,
        domains=sorted(set(domain_names)),
        token_hash=hash_token(token),
        token_prefix=token[:12],
    )
    await repository.add(session, operator)
    return NewOperator(operator, token)


async def create_by(
    session: AsyncSession,
    who: OperatorPrincipal,
    *,
    name: str,
    role: Role,
    domain_names: Sequence[str],
) -> NewOperator:
    who.require(Capability.operators_manage)
    return await create(session, name=name, role=role, domain_names=domain_names)


async def get(session: AsyncSession, who: OperatorPrincipal, operator_id: uuid.UUID) -> Operator:
    who.require(Capability.operators_manage)
    operator = await repository.get(session, operator_id)
    if operator is None:
        raise NotFound("Operator not found.")
    return operator


async def list_operators(
    session: AsyncSession, who: OperatorPrincipal, *, after: uuid.UUID | None, limit: int
) -> Sequence[Operator]:
    who.require(Capability.operators_manage)
    return await repository.list_page(session, after=after, limit=limit)


async def revoke(session: AsyncSession, who: OperatorPrincipal, operator_id: uuid.UUID) -> Operator:
    operator = await get(session, who, operator_id)
    if operator.revoked_at is not None:
        raise InvalidStateTransition("The operator is already revoked.")
    if operator.id == who.id:
        raise InvalidStateTransition("An operator cannot revoke its own token.")
    operator.revoked_at = utcnow()
    session.add(operator)
    await session.flush()
    return operator


async def ensure_bootstrap_admin(session: AsyncSession, configured_token: str | None) -> str | None:
    """Make sure a platform_admin can log in on a fresh install.

    With ``AGENTCTL_ADMIN_TOKEN`` set, the bootstrap operator's stored hash follows it. Without
    it, a token is generated on the very first start and returned (for printing once); later
    starts return None and keep the stored hash.

    A revoked bootstrap operator stays revoked: configuration never undoes a revocation. A
    start with ``AGENTCTL_ADMIN_TOKEN`` set after the revocation logs
    ``bootstrap_admin_revoked`` (a warning) and changes nothing.
    """
    existing = await repository.get_bootstrap(session)
    if configured_token is not None:
        token_hash = hash_token(configured_token)
        if existing is None:
            await repository.add(
                session,
                Operator(
                    name=BOOTSTRAP_NAME,
                    role=Role.platform_admin.value,
                    token_hash=token_hash,
                    token_prefix=configured_token[:12],
                    is_bootstrap=True,
                ),
            )
        elif existing.revoked_at is not None:
            log.warning(
                "bootstrap_admin_revoked",
                operator_id=str(existing.id),
                revoked_at=existing.revoked_at.isoformat(),
                detail="AGENTCTL_ADMIN_TOKEN is set but the bootstrap operator was revoked; "
                "it stays revoked. Use another platform_admin, and unset the variable.",
            )
        elif existing.token_hash != token_hash:
            existing.token_hash = token_hash
            existing.token_prefix = configured_token[:12]
            session.add(existing)
            await session.flush()
        return None
    if existing is not None:
        return None
    token = new_operator_token()
    await repository.add(
        session,
        Operator(
            name=BOOTSTRAP_NAME,
            role=Role.platform_admin.value,
            token_hash=hash_token(token),
            token_prefix=token[:12],
            is_bootstrap=True,
        ),
    )
    return token

"""Domain rules: only platform admins create domains; scoped operators see their own."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.auth.principals import Capability, OperatorPrincipal, Role
from control_plane.domains import repository
from control_plane.domains.schemas import DomainCreate, DomainPublic
from control_plane.kit.errors import AlreadyExists, Forbidden, InvalidStateTransition
from control_plane.kit.pagination import Page
from control_plane.kit.time import utcnow
from control_plane.models import Domain


async def create(session: AsyncSession, who: OperatorPrincipal, body: DomainCreate) -> Domain:
    if who.role is not Role.platform_admin:
        raise Forbidden("Only a platform_admin can create domains.")
    if await repository.get(session, body.name) is not None:
        raise AlreadyExists(f"The domain '{body.name}' already exists.")
    domain = Domain(name=body.name, description=body.description)
    await repository.add(session, domain)
    return domain


async def get(session: AsyncSession, who: OperatorPrincipal, name: str) -> Domain:
    who.require(Capability.registry_read)
    found = await repository.get(session, name)
    return who.visible(found, what="Domain", domain_of=lambda d: d.name)


async def exists(session: AsyncSession, name: str) -> bool:
    """Whether the domain exists, whoever asks (other domains check references with it)."""
    return await repository.get(session, name) is not None


async def is_suspended(session: AsyncSession, name: str) -> bool:
    """Whether the domain's kill switch is on, whoever asks."""
    found = await repository.get(session, name)
    return found is not None and found.suspended_at is not None


async def set_suspended(
    session: AsyncSession, who: OperatorPrincipal, name: str, suspended: bool
) -> Domain:
    """Turn the domain's kill switch on or off (registry:write in the domain; flush only).

    Raises ``Forbidden`` (403) by role, ``NotFound`` (404) outside the caller's domains,
    ``InvalidStateTransition`` (409) when it already is so.
    """
    who.require(Capability.registry_write)
    domain = who.visible(
        await repository.get(session, name), what="Domain", domain_of=lambda d: d.name
    )
    if not await repository.set_suspended(session, name, utcnow() if suspended else None):
        state = "suspended" if suspended else "active"
        raise InvalidStateTransition(f"The domain is already {state}.")
    await session.refresh(domain)
    return domain


async def list_domains(
    session: AsyncSession, who: OperatorPrincipal, *, after: str | None, limit: int
) -> Page[DomainPublic, str]:
    who.require(Capability.registry_read)
    rows = await repository.list_page(
        session, visible=who.visible_domains(), after=after, limit=limit
    )
    return Page[DomainPublic, str].of(rows, limit, cursor=lambda d: d.name)


async def find(session: AsyncSession, name: str) -> Domain | None:
    """The domain row, whoever asks (enforcement points, bundles); callers apply their rules."""
    return await repository.get(session, name)

"""Domain rules: only platform admins create domains; scoped operators see their own."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.auth.principals import Capability, OperatorPrincipal, Role
from control_plane.domains import repository
from control_plane.domains.schemas import DomainCreate, DomainList, DomainPublic
from control_plane.kit.errors import AlreadyExists, Forbidden, NotFound
from control_plane.kit.pagination import page_fields
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
    domain = await repository.get(session, name) if who.sees_domain(name) else None
    if domain is None:
        raise NotFound("Domain not found.")
    return domain


async def list_domains(
    session: AsyncSession, who: OperatorPrincipal, *, after: str | None, limit: int
) -> DomainList:
    who.require(Capability.registry_read)
    rows = await repository.list_page(
        session, visible=who.visible_domains(), after=after, limit=limit
    )
    return DomainList(**page_fields(rows, limit, DomainPublic, cursor=lambda d: d.name))

"""All SQL for policy bundles and revisions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.models import PolicyBundle, PolicyRevision, ShadowDiff


async def get_bundle(session: AsyncSession, name: str) -> PolicyBundle | None:
    return await session.get(PolicyBundle, name)


async def active_revision_number(session: AsyncSession, name: str) -> int | None:
    stmt = select(PolicyBundle.active_revision).where(PolicyBundle.name == name)
    return (await session.exec(stmt)).first()


async def list_bundles(
    session: AsyncSession, *, after: str | None, limit: int
) -> Sequence[PolicyBundle]:
    stmt = select(PolicyBundle).order_by(col(PolicyBundle.name)).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(col(PolicyBundle.name) > after)
    return (await session.exec(stmt)).all()


async def get_revision(session: AsyncSession, bundle: str, number: int) -> PolicyRevision | None:
    stmt = select(PolicyRevision).where(
        PolicyRevision.bundle == bundle, PolicyRevision.revision == number
    )
    return (await session.exec(stmt)).first()


async def list_revisions(
    session: AsyncSession, bundle: str, *, after: int | None, limit: int
) -> Sequence[PolicyRevision]:
    stmt = (
        select(PolicyRevision)
        .where(PolicyRevision.bundle == bundle)
        .order_by(col(PolicyRevision.revision).desc())
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(col(PolicyRevision.revision) < after)
    return (await session.exec(stmt)).all()


async def stored_content(
    session: AsyncSession, revision_id: uuid.UUID
) -> tuple[dict[str, Any], dict[str, Any], bytes | None]:
    """(modules, data, wasm) of a revision as the database holds them (read back, not cached)."""
    stmt = select(PolicyRevision.modules, PolicyRevision.data, PolicyRevision.wasm).where(
        PolicyRevision.id == revision_id
    )
    modules, data, wasm = (await session.exec(stmt)).one()
    return dict(modules), dict(data), (bytes(wasm) if wasm is not None else None)


async def next_revision_number(session: AsyncSession, bundle: str) -> int:
    stmt = select(func.max(PolicyRevision.revision)).where(PolicyRevision.bundle == bundle)
    current = (await session.exec(stmt)).first()
    return (current or 0) + 1


async def add(session: AsyncSession, row: PolicyBundle | PolicyRevision) -> None:
    session.add(row)
    await session.flush()


async def add_shadow_diffs(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """INSERT shadow differences, skipping each (decision, shadow revision) on record already;
    the number inserted. One statement per page of rows (SQLAlchemy's insertmanyvalues)."""
    if not rows:
        return 0
    table = ShadowDiff.__table__  # type: ignore[attr-defined]
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    stmt: Any = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    stmt = stmt.on_conflict_do_nothing(index_elements=["decision_id", "shadow_revision"])
    result = await session.exec(stmt.returning(table.c.id), params=rows)
    return len(result.all())


def _diff_filter(stmt: Any, bundle: str, shadow: int | None, visible: frozenset[str] | None) -> Any:
    stmt = stmt.where(ShadowDiff.bundle == bundle)
    if shadow is not None:
        stmt = stmt.where(ShadowDiff.shadow_revision == shadow)
    if visible is not None:
        stmt = stmt.where(col(ShadowDiff.domain).in_(sorted(visible)))
    return stmt


async def list_shadow_diffs(
    session: AsyncSession,
    bundle: str,
    *,
    shadow: int | None,
    visible: frozenset[str] | None,
    action: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[ShadowDiff]:
    stmt = _diff_filter(select(ShadowDiff), bundle, shadow, visible)
    if action is not None:
        stmt = stmt.where(ShadowDiff.action == action)
    if after is not None:
        stmt = stmt.where(col(ShadowDiff.id) > after)
    stmt = stmt.order_by(col(ShadowDiff.id)).limit(limit + 1)
    rows: Sequence[ShadowDiff] = (await session.exec(stmt)).all()
    return rows


async def summarise_shadow_diffs(
    session: AsyncSession, bundle: str, *, shadow: int | None, visible: frozenset[str] | None
) -> Sequence[tuple[str, str, str, int]]:
    """(action, old effect, new effect, count), ordered."""
    stmt = _diff_filter(
        select(
            ShadowDiff.action, ShadowDiff.old_effect, ShadowDiff.new_effect, func.count()
        ).group_by(col(ShadowDiff.action), col(ShadowDiff.old_effect), col(ShadowDiff.new_effect)),
        bundle,
        shadow,
        visible,
    )
    stmt = stmt.order_by(
        col(ShadowDiff.action), col(ShadowDiff.old_effect), col(ShadowDiff.new_effect)
    )
    return [(a, o, n, int(c)) for a, o, n, c in (await session.exec(stmt)).all()]

"""HTTP for safe policy change: a bundle's shadow revision and its diffs, its canary."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from control_plane.auth.dependencies import CurrentOperator, OperatorIdempotent
from control_plane.kit.errors import error_responses
from control_plane.kit.pagination import Page, Pagination
from control_plane.kit.router import Router
from control_plane.kit.routing import Session
from control_plane.kit.schemas import NAME_PATTERN
from control_plane.models import PolicyBundle
from control_plane.policy import rollout
from control_plane.policy.canary import BUCKETS
from control_plane.policy.schemas import (
    BundlePublic,
    CanaryPublic,
    CanaryStart,
    ShadowChange,
    ShadowDiffPublic,
    ShadowSet,
    ShadowSummary,
)
from control_plane.state import State

router = Router(tag="policies", prefix="/v1/policies", errors=(401, 403, 404, 422))

BundleName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)]
ShadowFilter = Annotated[
    int | None,
    Query(ge=1, le=2**31 - 1, description="Only this shadow revision's differences."),
]


def bundle_public(bundle: PolicyBundle) -> BundlePublic:
    canary = None
    if bundle.canary_revision is not None:
        canary = CanaryPublic(
            revision=bundle.canary_revision,
            percent=(bundle.canary_basis_points or 0) * 100 / BUCKETS,
            domains=list(bundle.canary_domains or ()),
        )
    return BundlePublic(
        name=bundle.name,
        active_revision=bundle.active_revision,
        shadow_revision=bundle.shadow_revision,
        canary=canary,
        created_at=bundle.created_at,
        updated_at=bundle.updated_at,
    )


@router.put("/{bundle}/shadow", dependencies=[OperatorIdempotent])
async def set_shadow(
    bundle: BundleName, body: ShadowSet, who: CurrentOperator, session: Session, state: State
) -> BundlePublic:
    """Evaluate a revision beside every decision, never changing an answer."""
    found = await rollout.set_shadow(session, who, state.audit_context, bundle, body.revision)
    return bundle_public(found)


@router.delete("/{bundle}/shadow", dependencies=[OperatorIdempotent])
async def clear_shadow(
    bundle: BundleName, who: CurrentOperator, session: Session, state: State
) -> BundlePublic:
    """Stop shadow evaluation; the differences found stay listed."""
    return bundle_public(await rollout.clear_shadow(session, who, state.audit_context, bundle))


@router.get("/{bundle}/shadow/diffs")
async def list_shadow_diffs(
    bundle: BundleName,
    who: CurrentOperator,
    session: Session,
    page: Pagination,
    shadow_revision: ShadowFilter = None,
    action: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[ShadowDiffPublic]:
    """Decisions the shadow revision would have answered differently, oldest first."""
    rows = await rollout.list_diffs(
        session,
        who,
        bundle,
        shadow=shadow_revision,
        action=action,
        after=page.after,
        limit=page.limit,
    )
    return Page[ShadowDiffPublic].of(rows, page.limit)


@router.get("/{bundle}/shadow/summary")
async def summarise_shadow_diffs(
    bundle: BundleName, who: CurrentOperator, session: Session, shadow_revision: ShadowFilter = None
) -> ShadowSummary:
    """The shadow differences counted per action and change (e.g. allow->deny)."""
    rows = await rollout.summarise_diffs(session, who, bundle, shadow=shadow_revision)
    changes = [ShadowChange(action=a, change=c, count=n) for a, c, n in rows]
    return ShadowSummary(
        bundle=bundle,
        shadow_revision=shadow_revision,
        total=sum(c.count for c in changes),
        changes=changes,
    )


@router.put("/{bundle}/canary", dependencies=[OperatorIdempotent])
async def start_canary(
    bundle: BundleName, body: CanaryStart, who: CurrentOperator, session: Session, state: State
) -> BundlePublic:
    """Serve a revision to a share of agents (by hash) or to named domains."""
    found = await rollout.start_canary(
        session,
        who,
        state.audit_context,
        bundle,
        body.revision,
        percent=body.percent,
        domains=body.domains,
    )
    return bundle_public(found)


@router.post(
    "/{bundle}/canary/promote", dependencies=[OperatorIdempotent], responses=error_responses(409)
)
async def promote_canary(
    bundle: BundleName, who: CurrentOperator, session: Session, state: State
) -> BundlePublic:
    """Activate the canary revision for every agent; the canary ends."""
    return bundle_public(await rollout.promote_canary(session, who, state.audit_context, bundle))


@router.post(
    "/{bundle}/canary/rollback", dependencies=[OperatorIdempotent], responses=error_responses(409)
)
async def rollback_canary(
    bundle: BundleName, who: CurrentOperator, session: Session, state: State
) -> BundlePublic:
    """End the canary: every agent is served the active revision from the next decision."""
    return bundle_public(await rollout.rollback_canary(session, who, state.audit_context, bundle))

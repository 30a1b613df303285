"""Safe policy change: the shadow revision and the canary of a bundle (the rules; SQL in
``repository``, the assignment in ``canary``, the evaluation in ``shadow``).

Every change is written to the bundle's row, which each decision reads in its one state
statement (``decisions.repository.decision_state``), so it takes effect on the very next
decision on every replica. Each change that changes something is an audit record (kind
``policy``, in the audit log of the ``platform`` domain: a policy change concerns every
domain) and an event, in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.audit import service as audit
from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.events import service as events
from control_plane.kit.errors import Conflict, FieldError, NotFound, ValidationFailed
from control_plane.kit.time import utcnow
from control_plane.models import PolicyBundle, ShadowDiff
from control_plane.policy import repository
from control_plane.policy.canary import BUCKETS

#: The audit log that holds policy changes (activation, shadow, canary).
AUDIT_DOMAIN = "platform"


async def record_change(
    session: AsyncSession,
    ctx: audit.AuditContext,
    who: OperatorPrincipal | None,
    event_type: str,
    details: dict[str, Any],
) -> None:
    """The audit record (action: the event type without its version) and the event of one
    policy change, in the caller's transaction."""
    by = who.name if who is not None else "system"
    await audit.record_control(
        session,
        ctx,
        kind="policy",
        domain=AUDIT_DOMAIN,
        agent_id=None,
        action=event_type.removesuffix(".v1"),
        actor=who.key if who is not None else "system",
        details={**details, "by": by},
    )
    subject = f"{details['bundle']}/{details['revision']}"
    await events.emit(session, event_type, {**details, "by": by}, subject=subject)


async def _bundle(session: AsyncSession, name: str) -> PolicyBundle:
    bundle = await repository.get_bundle(session, name)
    if bundle is None:
        raise NotFound("Policy bundle not found.")
    return bundle


async def _existing(session: AsyncSession, bundle: str, number: int) -> None:
    if await repository.get_revision(session, bundle, number) is None:
        raise NotFound("Revision not found.")


async def _save(session: AsyncSession, bundle: PolicyBundle) -> PolicyBundle:
    bundle.updated_at = utcnow()
    session.add(bundle)
    await session.flush()
    return bundle


async def set_shadow(
    session: AsyncSession,
    who: OperatorPrincipal,
    ctx: audit.AuditContext,
    bundle_name: str,
    number: int,
) -> PolicyBundle:
    """Evaluate revision ``number`` beside every decision from now on. 404: no such bundle or
    revision."""
    who.require(Capability.policy_write)
    bundle = await _bundle(session, bundle_name)
    await _existing(session, bundle_name, number)
    if bundle.shadow_revision == number:
        return bundle
    bundle.shadow_revision = number
    await _save(session, bundle)
    details = {"bundle": bundle_name, "revision": number}
    await record_change(session, ctx, who, "policy.shadow.set.v1", details)
    return bundle


async def clear_shadow(
    session: AsyncSession, who: OperatorPrincipal, ctx: audit.AuditContext, bundle_name: str
) -> PolicyBundle:
    """Stop shadow evaluation (its differences stay listed). 404: no such bundle."""
    who.require(Capability.policy_write)
    bundle = await _bundle(session, bundle_name)
    if bundle.shadow_revision is None:
        return bundle
    details = {"bundle": bundle_name, "revision": bundle.shadow_revision}
    bundle.shadow_revision = None
    await _save(session, bundle)
    await record_change(session, ctx, who, "policy.shadow.cleared.v1", details)
    return bundle


async def start_canary(
    session: AsyncSession,
    who: OperatorPrincipal,
    ctx: audit.AuditContext,
    bundle_name: str,
    number: int,
    *,
    percent: float,
    domains: Sequence[str],
) -> PolicyBundle:
    """Serve revision ``number`` to the agents ``policy.canary.on_canary`` assigns: ``percent``
    of them by hash, and every agent of ``domains``. Replaces a running canary. 404: no such
    bundle or revision; 422: neither a share nor a domain, or the active revision."""
    who.require(Capability.policy_write)
    bundle = await _bundle(session, bundle_name)
    await _existing(session, bundle_name, number)
    basis_points = round(percent * BUCKETS / 100)
    if basis_points <= 0 and not domains:
        raise ValidationFailed(
            "A canary needs a share of agents or at least one domain.",
            errors=[FieldError(pointer="/body/percent", detail="0 with no domains")],
        )
    if bundle.active_revision == number:
        raise ValidationFailed(
            f"Revision {number} is the active revision already.",
            errors=[FieldError(pointer="/body/revision", detail="the active revision")],
        )
    bundle.canary_revision = number
    bundle.canary_basis_points = basis_points
    bundle.canary_domains = sorted(set(domains))
    await _save(session, bundle)
    details = {
        "bundle": bundle_name,
        "revision": number,
        "percent": basis_points * 100 / BUCKETS,
        "domains": bundle.canary_domains,
    }
    await record_change(session, ctx, who, "policy.canary.started.v1", details)
    return bundle


def _clear_canary(bundle: PolicyBundle) -> int:
    if bundle.canary_revision is None:
        raise Conflict(f"Bundle {bundle.name} has no canary.")
    number = bundle.canary_revision
    bundle.canary_revision = None
    bundle.canary_basis_points = None
    bundle.canary_domains = None
    return number


async def promote_canary(
    session: AsyncSession, who: OperatorPrincipal, ctx: audit.AuditContext, bundle_name: str
) -> PolicyBundle:
    """Make the canary revision the active one for every agent and end the canary.
    404: no such bundle; 409: no canary."""
    who.require(Capability.policy_write)
    bundle = await _bundle(session, bundle_name)
    number = _clear_canary(bundle)
    bundle.active_revision = number
    await _save(session, bundle)
    details = {"bundle": bundle_name, "revision": number}
    await record_change(session, ctx, who, "policy.canary.promoted.v1", details)
    await record_change(session, ctx, who, "policy.revision.activated.v1", details)
    return bundle


async def rollback_canary(
    session: AsyncSession, who: OperatorPrincipal, ctx: audit.AuditContext, bundle_name: str
) -> PolicyBundle:
    """End the canary: every agent is served the active revision again from the next
    decision. 404: no such bundle; 409: no canary."""
    who.require(Capability.policy_write)
    bundle = await _bundle(session, bundle_name)
    number = _clear_canary(bundle)
    await _save(session, bundle)
    details = {"bundle": bundle_name, "revision": number}
    await record_change(session, ctx, who, "policy.canary.rolled_back.v1", details)
    return bundle


async def list_diffs(
    session: AsyncSession,
    who: OperatorPrincipal,
    bundle_name: str,
    *,
    shadow: int | None,
    action: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[ShadowDiff]:
    """The bundle's shadow differences in the caller's domains, oldest first (policy:read)."""
    who.require(Capability.policy_read)
    await _bundle(session, bundle_name)
    return await repository.list_shadow_diffs(
        session,
        bundle_name,
        shadow=shadow,
        visible=who.visible_domains(),
        action=action,
        after=after,
        limit=limit,
    )


async def summarise_diffs(
    session: AsyncSession, who: OperatorPrincipal, bundle_name: str, *, shadow: int | None
) -> list[tuple[str, str, int]]:
    """(action, ``old->new``, count) of the bundle's shadow differences (policy:read)."""
    who.require(Capability.policy_read)
    await _bundle(session, bundle_name)
    rows = await repository.summarise_shadow_diffs(
        session, bundle_name, shadow=shadow, visible=who.visible_domains()
    )
    return [(action, f"{old}->{new}", count) for action, old, new, count in rows]

"""The policy store: immutable, validated revisions of named bundles, and which one is active.

A revision is validated before it is stored (``validation.validate_modules``: OPA's compiler when
an OPA binary is configured, the embedded engine plus static checks otherwise), so a bundle that
either engine would reject never reaches a decision.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.config import Settings
from control_plane.kit.errors import Conflict, FieldError, NotFound, ValidationFailed
from control_plane.kit.time import utcnow
from control_plane.models import PolicyBundle, PolicyRevision
from control_plane.policy import repository
from control_plane.policy.source import PolicySource
from control_plane.policy.validation import PolicyIssue, validate_modules


def content_digest(modules: Mapping[str, str], data: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        {"modules": dict(modules), "data": dict(data)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _issue_text(issue: PolicyIssue) -> str:
    where = issue.file
    if issue.line is not None:
        where += f":{issue.line}"
        if issue.column is not None:
            where += f":{issue.column}"
    return f"{where}: {issue.message}"


def _rejected(issues: Sequence[PolicyIssue]) -> ValidationFailed:
    errors = [
        FieldError(
            pointer=f"/body/modules/{i.file.replace('~', '~0').replace('/', '~1')}",
            detail=_issue_text(i),
        )
        for i in issues
    ]
    more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    return ValidationFailed(
        f"The policy was rejected: {_issue_text(issues[0])}{more}", errors=errors
    )


async def create_revision(
    session: AsyncSession,
    who: OperatorPrincipal | None,
    settings: Settings,
    bundle_name: str,
    source: PolicySource,
    *,
    validate: bool = True,
) -> PolicyRevision:
    if who is not None:
        who.require(Capability.policy_write)
    if validate:
        issues = await asyncio.to_thread(
            validate_modules, source.modules, source.data, opa_bin=settings.opa_bin
        )
        if issues:
            raise _rejected(issues)
    if await repository.get_bundle(session, bundle_name) is None:
        await repository.add(session, PolicyBundle(name=bundle_name))
    revision = PolicyRevision(
        bundle=bundle_name,
        revision=await repository.next_revision_number(session, bundle_name),
        modules=dict(source.modules),
        data=dict(source.data),
        digest=content_digest(source.modules, source.data),
        created_by=who.key if who is not None else "system",
    )
    try:
        await repository.add(session, revision)
    except IntegrityError as exc:
        raise Conflict("Another revision was stored concurrently; retry.") from exc
    return revision


async def _bundle(session: AsyncSession, name: str) -> PolicyBundle:
    bundle = await repository.get_bundle(session, name)
    if bundle is None:
        raise NotFound("Policy bundle not found.")
    return bundle


async def activate(
    session: AsyncSession, who: OperatorPrincipal | None, bundle_name: str, number: int
) -> tuple[PolicyBundle, PolicyRevision]:
    if who is not None:
        who.require(Capability.policy_write)
    bundle = await _bundle(session, bundle_name)
    revision = await repository.get_revision(session, bundle_name, number)
    if revision is None:
        raise NotFound("Revision not found.")
    bundle.active_revision = number
    bundle.updated_at = utcnow()
    session.add(bundle)
    await session.flush()
    return bundle, revision


async def get_revision(
    session: AsyncSession, who: OperatorPrincipal, bundle_name: str, number: int
) -> tuple[PolicyBundle, PolicyRevision]:
    who.require(Capability.policy_read)
    bundle = await _bundle(session, bundle_name)
    revision = await repository.get_revision(session, bundle_name, number)
    if revision is None:
        raise NotFound("Revision not found.")
    return bundle, revision


async def list_revisions(
    session: AsyncSession,
    who: OperatorPrincipal,
    bundle_name: str,
    *,
    after: int | None,
    limit: int,
) -> tuple[PolicyBundle, Sequence[PolicyRevision]]:
    who.require(Capability.policy_read)
    bundle = await _bundle(session, bundle_name)
    return bundle, await repository.list_revisions(session, bundle_name, after=after, limit=limit)


async def list_bundles(
    session: AsyncSession, who: OperatorPrincipal, *, after: str | None, limit: int
) -> Sequence[PolicyBundle]:
    who.require(Capability.policy_read)
    return await repository.list_bundles(session, after=after, limit=limit)


async def ensure_default_bundle(session: AsyncSession, settings: Settings) -> int | None:
    """On the first start, store the shipped policy as the ``default`` bundle and activate it.
    Returns the revision created, or None when the bundle already exists."""
    from control_plane.policy.source import read_policy_dir

    if await repository.get_bundle(session, "default") is not None:
        return None
    source = read_policy_dir(settings.resolved_policy_dir)
    # The shipped policy is validated by the test suite (opa check and opa test in CI).
    revision = await create_revision(session, None, settings, "default", source, validate=False)
    await activate(session, None, "default", revision.revision)
    return revision.revision

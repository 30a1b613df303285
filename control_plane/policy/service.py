"""The policy store: immutable, validated revisions of named bundles, and which one is active.

An upload is validated first (`validate_upload`: OPA's compiler with the shared capabilities,
then the embedded engine, then `opa build -t wasm` for the wasm engine; see `validation`),
before the request's transaction begins and outside SQLite's writer turn, so other writes never
wait for it. Only a `ValidatedSource` can be stored, and what is stored is read back and digested
again (the module by its sha256): the digest reported is the digest of what the database holds.
Without an OPA binary nothing is validated and nothing is stored (503).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.audit.service import AuditContext
from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.config import Settings
from control_plane.events import service as events
from control_plane.kit.errors import (
    Conflict,
    FieldError,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from control_plane.kit.time import utcnow
from control_plane.models import PolicyBundle, PolicyRevision
from control_plane.policy import repository, rollout
from control_plane.policy.bundles import PolicySource
from control_plane.policy.validation import (
    OpaUnavailableError,
    PolicyIssue,
    validate_and_compile,
)
from control_plane.policy.validation.opa import WASM_MODULE, WASM_SOURCE_DIGEST
from control_plane.policy.validation.structure import DATA_FILE, canonical_numbers

log = structlog.get_logger(__name__)


def content_digest(modules: Mapping[str, str], data: Mapping[str, Any]) -> str:
    canonical = json.dumps(
        {"modules": dict(modules), "data": dict(data)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _pointer(issue: PolicyIssue) -> str:
    if issue.file == DATA_FILE:
        return "/body/data"
    return f"/body/modules/{issue.file.replace('~', '~0').replace('/', '~1')}"


def _rejected(issues: Sequence[PolicyIssue]) -> ValidationFailed:
    errors = [FieldError(pointer=_pointer(i), detail=f"{i.text()} ({i.code})") for i in issues]
    more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    return ValidationFailed(f"The policy was rejected: {issues[0].text()}{more}", errors=errors)


def _sha256(blob: bytes | None) -> str | None:
    return None if blob is None else hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True, slots=True)
class ValidatedSource:
    """Modules and data exactly as validated (private copies), with their content digest, and
    the WebAssembly module OPA compiled from them (None: the bundle has no decision package)."""

    modules: dict[str, str]
    data: dict[str, Any]
    digest: str
    wasm: bytes | None = None


async def validate_upload(settings: Settings, source: PolicySource) -> ValidatedSource:
    """Validate in a worker thread; raises ValidationFailed (422) or ServiceUnavailable (503)."""
    modules, data = copy.deepcopy(source.modules), canonical_numbers(source.data)
    try:
        issues, wasm = await asyncio.to_thread(
            validate_and_compile, modules, data, opa_bin=settings.opa_bin
        )
    except OpaUnavailableError as exc:
        raise ServiceUnavailable(
            f"Policy cannot be validated, so it is not stored: {exc}. Decisions go on."
        ) from exc
    if issues:
        raise _rejected(issues)
    return ValidatedSource(modules, data, content_digest(modules, data), wasm)


async def create_revision(
    session: AsyncSession,
    who: OperatorPrincipal | None,
    bundle_name: str,
    source: ValidatedSource,
) -> PolicyRevision:
    """Store `source` as the bundle's next revision; 409 on a concurrent store."""
    if who is not None:
        who.require(Capability.policy_write)
    if await repository.get_bundle(session, bundle_name) is None:
        await repository.add(session, PolicyBundle(name=bundle_name))
    revision = PolicyRevision(
        bundle=bundle_name,
        revision=await repository.next_revision_number(session, bundle_name),
        modules=source.modules,
        data=source.data,
        digest=source.digest,
        wasm=source.wasm,
        created_by=who.key if who is not None else "system",
    )
    try:
        await repository.add(session, revision)
    except IntegrityError as exc:
        raise Conflict("Another revision was stored concurrently; retry.") from exc
    modules, data, wasm = await repository.stored_content(session, revision.id)
    if content_digest(modules, data) != source.digest or _sha256(wasm) != _sha256(source.wasm):
        # The database would hold something other than what was validated: store nothing.
        raise ValidationFailed(
            "The policy cannot be stored exactly as it was validated.",
            errors=[FieldError(pointer="/body", detail="stored content differs from the upload")],
        )
    return revision


async def _bundle(session: AsyncSession, name: str) -> PolicyBundle:
    bundle = await repository.get_bundle(session, name)
    if bundle is None:
        raise NotFound("Policy bundle not found.")
    return bundle


async def activate(
    session: AsyncSession,
    who: OperatorPrincipal | None,
    bundle_name: str,
    number: int,
    audit_context: AuditContext | None = None,
) -> tuple[PolicyBundle, PolicyRevision]:
    """Make revision ``number`` the active one; with ``audit_context`` the change is an audit
    record (``rollout.record_change``) besides its event. A canary of that revision ends: it
    is promoted."""
    if who is not None:
        who.require(Capability.policy_write)
    bundle = await _bundle(session, bundle_name)
    revision = await repository.get_revision(session, bundle_name, number)
    if revision is None:
        raise NotFound("Revision not found.")
    changed = bundle.active_revision != number
    bundle.active_revision = number
    if bundle.canary_revision == number:
        bundle.canary_revision = bundle.canary_basis_points = bundle.canary_domains = None
    bundle.updated_at = utcnow()
    session.add(bundle)
    await session.flush()
    if changed and audit_context is not None:
        await rollout.record_change(
            session,
            audit_context,
            who,
            "policy.revision.activated.v1",
            {"bundle": bundle_name, "revision": number},
        )
    elif changed:  # re-activating the active revision changes nothing, so announces nothing
        await events.emit(
            session,
            "policy.revision.activated.v1",
            {"bundle": bundle_name, "revision": number},
            subject=f"{bundle_name}/{number}",
        )
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
    from control_plane.policy.bundles import read_policy_dir
    from control_plane.policy.defaults import default_policy_dir

    if await repository.get_bundle(session, "default") is not None:
        return None
    directory = default_policy_dir(settings)
    source = read_policy_dir(directory)
    digest = content_digest(source.modules, source.data)
    # The shipped policy is validated by the test suite (opa check and opa test in CI), and the
    # service must start without an OPA binary: its compiled module is committed beside it
    # (`make wasm`; tests/policy/test_wasm_engine.py fails when it no longer matches the Rego).
    wasm = _committed_module(directory, digest)
    if wasm is None:
        wasm = await _compile_if_possible(settings, source)
        if wasm is None:
            log.warning(
                "default_policy_not_compiled",
                directory=str(directory),
                detail="no module built from these sources, and OPA is missing or refused "
                "them: the wasm engine denies every decision until a compiled revision is "
                "activated",
            )
    shipped = ValidatedSource(source.modules, source.data, digest, wasm)
    revision = await create_revision(session, None, "default", shipped)
    await activate(session, None, "default", revision.revision)
    return revision.revision


def _committed_module(directory: Path, digest: str) -> bytes | None:
    """The directory's `policy.wasm` when it was compiled from exactly these sources (the
    `WASM_SOURCE_DIGEST` file beside it names their `content_digest`), else None: an edited copy
    of the shipped policy must not decide with the module of the policy it was copied from."""
    module = directory / WASM_MODULE.lstrip("/")
    stamp = directory / WASM_SOURCE_DIGEST
    if not module.is_file():
        return None
    built_from = stamp.read_text(encoding="utf-8").strip() if stamp.is_file() else None
    if built_from != digest:
        log.warning(
            "default_policy_module_not_used",
            directory=str(directory),
            detail=f"{module.name} was not compiled from this directory's Rego and data "
            "(`make wasm` compiles it and writes the digest of its sources beside it)",
        )
        return None
    return module.read_bytes()


async def _compile_if_possible(settings: Settings, source: PolicySource) -> bytes | None:
    """A policy directory without a module built from it: compile it if OPA is there and
    accepts it, else None (the wasm engine then denies with the reason until a compiled
    revision is activated)."""
    try:
        issues, wasm = await asyncio.to_thread(
            validate_and_compile, source.modules, source.data, opa_bin=settings.opa_bin
        )
    except OpaUnavailableError:
        return None
    return None if issues else wasm


async def active_revision(session: AsyncSession, bundle_name: str) -> PolicyRevision | None:
    """The active revision of ``bundle_name`` (None without one), for federation bundles."""
    number = await repository.active_revision_number(session, bundle_name)
    return None if number is None else await repository.get_revision(session, bundle_name, number)


async def active_revision_number(session: AsyncSession, bundle_name: str) -> int | None:
    return await repository.active_revision_number(session, bundle_name)


@dataclass(frozen=True, slots=True)
class EdgePlan:
    """The revisions a domain's enforcement points are served: ``active`` for every agent the
    canary does not take; a percentage canary's ``canary`` revision and share (basis points)
    when the bundle has one that the domain is not named by (None, 0 otherwise).
    ``served_by``: why ``active`` answers (``canary`` when a canary names the domain)."""

    active: int
    canary: int | None = None
    basis_points: int = 0
    served_by: str = "active"


async def edge_plan(session: AsyncSession, bundle_name: str, domain: str) -> EdgePlan | None:
    """What ``domain``'s enforcement points are served (None: no revision to serve). A canary
    naming the domain puts every agent of it on the canary: the canary revision is then the
    domain's only one. A canary by share serves its revision to the agents
    ``policy.canary.on_canary`` assigns (``federation.routing``); the others, and every agent
    when the bundle has no active revision of its own, keep the active one."""
    bundle = await repository.get_bundle(session, bundle_name)
    if bundle is None:
        return None
    if bundle.canary_revision is not None and domain in (bundle.canary_domains or ()):
        return EdgePlan(bundle.canary_revision, served_by="canary")
    if bundle.active_revision is None:
        return None
    share = bundle.canary_basis_points or 0
    if share > 0 and bundle.canary_revision not in (None, bundle.active_revision):
        return EdgePlan(bundle.active_revision, bundle.canary_revision, share)
    return EdgePlan(bundle.active_revision)


async def revision(session: AsyncSession, bundle_name: str, number: int) -> PolicyRevision | None:
    """Revision ``number`` of ``bundle_name`` (None when there is none)."""
    return await repository.get_revision(session, bundle_name, number)

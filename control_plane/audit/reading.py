"""Reading the audit log (operators: auditors see every domain, domain admins their own): records
with their place in the log and inclusion proof, checkpoints, proofs between sizes, the
checkpoint verifier keys. Verification and export are in ``verification``."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.audit import repository
from control_plane.audit.keys import load_keys, log_origin
from control_plane.audit.log import split_leaf
from control_plane.audit.merkle import ProofError
from control_plane.audit.note import b64, verifier_key
from control_plane.audit.schemas import (
    AuditRecordPublic,
    AuditRecordSummary,
    CheckpointPublic,
    ConsistencyProof,
    InclusionProof,
    LogPosition,
    RecordProof,
    VerifierKeyPublic,
    VerifierKeys,
)
from control_plane.audit.service import AuditContext, require_log
from control_plane.audit.trees import LogTrees
from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.kit.errors import FieldError, NotFound, ValidationFailed


async def get_record(
    session: AsyncSession,
    who: OperatorPrincipal,
    record_id: uuid.UUID,
    trees: LogTrees,
) -> AuditRecordPublic:
    who.require(Capability.audit_read)
    row = await repository.record(session, record_id)
    row = who.visible(row, what="Audit record")
    leaf = await repository.leaf_of(session, record_id)
    if leaf is None:
        return AuditRecordPublic(
            record=json.loads(row.record),
            log=LogPosition(domain=row.domain, index=None, leaf_hash=None, canonical=None),
        )
    data = bytes(leaf.canonical)
    parts = split_leaf(data)
    record = json.loads(parts[1]) if parts is not None else json.loads(row.record)
    proof = None
    checkpoint = await repository.latest_checkpoint(session, row.domain)
    if checkpoint is not None and leaf.seq < checkpoint.size:
        tree = await trees.get(session, row.domain, checkpoint.size)
        if tree.size >= checkpoint.size:
            hashes = tree.inclusion_proof(leaf.seq, checkpoint.size)
            proof = RecordProof(
                size=checkpoint.size, hashes=[b64(h) for h in hashes], checkpoint=checkpoint.note
            )
    return AuditRecordPublic(
        record=record,
        log=LogPosition(
            domain=row.domain,
            index=leaf.seq,
            leaf_hash=b64(bytes(leaf.leaf_hash)),
            canonical=b64(data),
        ),
        proof=proof,
    )


async def latest_checkpoint_note(session: AsyncSession, who: OperatorPrincipal, domain: str) -> str:
    who.require(Capability.audit_read)
    checkpoint = await repository.latest_checkpoint(session, domain)
    if checkpoint is None:
        await require_log(session, who, domain)  # an unknown name is "Log not found."
        raise NotFound("This log has no checkpoint yet.")
    who.visible(domain, what="Log", domain_of=str)
    return checkpoint.note


def _bad_size(name: str, detail: str) -> ValidationFailed:
    return ValidationFailed(detail, errors=[FieldError(pointer=f"/query/{name}", detail=detail)])


async def inclusion_proof(
    session: AsyncSession,
    who: OperatorPrincipal,
    trees: LogTrees,
    domain: str,
    index: int,
    size: int,
) -> InclusionProof:
    who.require(Capability.audit_read)
    await require_log(session, who, domain)
    tree = await trees.get(session, domain, size)
    if size > tree.size:
        raise _bad_size("size", f"the log has {tree.size} leaves")
    try:
        hashes = tree.inclusion_proof(index, size)
    except ProofError as exc:
        raise _bad_size("index", str(exc)) from None
    return InclusionProof(index=index, size=size, hashes=[b64(h) for h in hashes])


async def consistency_proof(
    session: AsyncSession,
    who: OperatorPrincipal,
    trees: LogTrees,
    domain: str,
    first: int,
    second: int,
) -> ConsistencyProof:
    who.require(Capability.audit_read)
    await require_log(session, who, domain)
    tree = await trees.get(session, domain, second)
    if second > tree.size:
        raise _bad_size("to", f"the log has {tree.size} leaves")
    try:
        hashes = tree.consistency_proof(first, second)
    except ProofError as exc:
        raise _bad_size("from", str(exc)) from None
    return ConsistencyProof(from_=first, to=second, hashes=[b64(h) for h in hashes])


async def list_records(
    session: AsyncSession,
    who: OperatorPrincipal,
    *,
    limit: int,
    **filters: Any,
) -> list[AuditRecordSummary]:
    """``limit + 1`` summaries (for has_more) of the records the caller may see."""
    who.require(Capability.audit_read)
    rows = await repository.list_records(
        session, visible=who.visible_domains(), limit=limit, **filters
    )
    return [
        AuditRecordSummary.model_validate(
            {**row.model_dump(exclude={"record", "content_mac"}), "record": json.loads(row.record)}
        )
        for row in rows
    ]


async def list_checkpoints(
    session: AsyncSession,
    who: OperatorPrincipal,
    *,
    domain: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[CheckpointPublic]:
    who.require(Capability.audit_read)
    rows = await repository.list_checkpoints(
        session, visible=who.visible_domains(), domain=domain, after=after, limit=limit
    )
    return [
        CheckpointPublic(
            id=row.id,
            domain=row.domain,
            size=row.size,
            root_hash=b64(bytes(row.root_hash)),
            note=row.note,
            created_at=row.created_at,
        )
        for row in rows
    ]


async def verifier_keys(
    session: AsyncSession, who: OperatorPrincipal, ctx: AuditContext, kek: str, domain: str | None
) -> VerifierKeys:
    """One note verifier key per (checkpoint key, log): the key name is the log's origin."""
    who.require(Capability.audit_read)
    if domain is not None:
        await require_log(session, who, domain)
        domains = [domain]
    else:
        domains = [d for d in await repository.log_domains(session) if who.sees_domain(d)]
    out = []
    for key in await load_keys(session, kek):
        for name in domains:
            origin = await log_origin(session, ctx, name)
            out.append(
                VerifierKeyPublic(
                    name=origin,
                    verifier_key=verifier_key(origin, key.public),
                    created_at=key.created_at,
                )
            )
    return VerifierKeys(keys=out)

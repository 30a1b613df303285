"""Checking stored logs against their signed checkpoints, and streaming a log out.

``verify_logs`` recomputes each log from its stored leaves (``log.LogChecker``) with pages read
in order, so memory stays O(page + log n). ``export_lines`` streams a log as JSON Lines, one
``{"index", "leaf_hash", "record"}`` object per leaf, each read page in its own short read
transaction so a long export holds no snapshot open.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.audit import repository
from control_plane.audit.governance import NO_AGENT
from control_plane.audit.keys import CheckpointKey, load_keys, log_origin
from control_plane.audit.log import LogChecker, LogStatus, split_leaf
from control_plane.audit.note import NoteError, b64, note_origin, open_checkpoint
from control_plane.audit.records import AuditContext, iso
from control_plane.audit.schemas import LogVerification, VerifyResult
from control_plane.audit.service import require_log
from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.kit.db import SessionMaker
from control_plane.kit.time import aware

PAGE = 5_000


def _open(note: str, origin: str, keys: list[CheckpointKey]) -> tuple[int, bytes] | None:
    for key in keys:
        try:
            checkpoint = open_checkpoint(note, key.verifier(origin))
        except NoteError:
            continue
        return checkpoint.size, checkpoint.root
    return None


async def verify_log(
    session: AsyncSession, ctx: AuditContext, domain: str, keys: list[CheckpointKey]
) -> LogStatus:
    origin = await log_origin(session, ctx, domain)
    checkpoints: dict[int, bytes] = {}
    for row in await repository.checkpoints_of(session, domain):
        opened = _open(row.note, origin, keys)
        if opened is None and note_origin(row.note) != origin:
            return LogStatus(
                checkpoint_size=row.size,
                reason=f"the checkpoint {row.id} (size {row.size}) is signed for origin "
                f"{note_origin(row.note)!r}, not the log's origin {origin!r}",
            )
        if opened is None:
            return LogStatus(
                checkpoint_size=row.size,
                reason=f"the checkpoint {row.id} (size {row.size}) does not verify with the "
                "published checkpoint key",
            )
        if opened != (row.size, bytes(row.root_hash)):
            return LogStatus(
                checkpoint_size=row.size,
                reason=f"the checkpoint {row.id} says size {opened[0]}, its row {row.size}",
            )
        checkpoints[opened[0]] = opened[1]
    checker = LogChecker(checkpoints=checkpoints)
    after = -1
    while True:
        page = await repository.leaves_page(session, domain, after, PAGE)
        for seq, _rid, data, stored, record, columns in page:
            text = record.encode("utf-8") if record is not None else b""
            if not checker.add(seq, data, stored, record_text=text):
                return checker.finish()
            changed = _columns_changed(text, columns)
            if changed:
                return checker.fail(
                    seq,
                    f"the record at index {seq} is filed under {', '.join(changed)} other than "
                    "its leaf says (its row's columns were changed)",
                )
        if len(page) < PAGE:
            return checker.finish()
        after = page[-1][0]


def _columns_changed(text: bytes, columns: dict[str, Any] | None) -> list[str]:
    """The names of the row's indexed columns (what the record queries filter on) that differ
    from the record they repeat: verified records must be found where they belong."""
    if columns is None:
        return []
    try:
        record = json.loads(text)
    except ValueError:
        return ["record"]
    agent = record.get("agent")
    expected: dict[str, Any] = {
        "id": record.get("id"),
        "domain": record.get("domain"),
        "agent_id": agent.get("id") if isinstance(agent, dict) else str(NO_AGENT),
        "kind": record.get("kind"),
        "action": record.get("action"),
        "status": record.get("status"),
        "decision_id": record.get("decision_id"),
        "trace_id": record.get("trace_id"),
        "timestamp": record.get("timestamp"),
    }
    changed = []
    for name, want in expected.items():
        have = columns[name]
        if name == "timestamp":
            have = None if have is None else iso(aware(have))
        elif have is not None and not isinstance(have, str):
            have = str(have)
        if have != want:
            changed.append(name)
    return changed


async def verify_logs(
    session: AsyncSession,
    who: OperatorPrincipal,
    ctx: AuditContext,
    kek: str,
    domain: str | None,
) -> VerifyResult:
    who.require(Capability.audit_read)
    if domain is not None:
        await require_log(session, who, domain)
        domains = [domain]
    else:
        domains = [d for d in await repository.log_domains(session) if who.sees_domain(d)]
    keys = await load_keys(session, kek)
    logs = []
    for name in domains:
        status = await verify_log(session, ctx, name, keys)
        logs.append(
            LogVerification(
                domain=name,
                size=status.size,
                checkpoint_size=status.checkpoint_size,
                first_bad_index=status.first_bad_index,
                reason=status.reason,
            )
        )
    return VerifyResult(
        ok=all(log.first_bad_index is None and log.reason is None for log in logs), logs=logs
    )


async def export_size(session: AsyncSession, who: OperatorPrincipal, domain: str) -> int:
    who.require(Capability.audit_read)
    await require_log(session, who, domain)
    return await repository.log_size(session, domain)


async def export_lines(sessionmaker: SessionMaker, domain: str, size: int) -> AsyncIterator[bytes]:
    """The first ``size`` leaves of the log: a consistent prefix, whatever is appended."""
    after = -1
    while True:
        async with sessionmaker() as session:
            page = await repository.leaves_page(session, domain, after, PAGE)
        chunk = []
        page = [row for row in page if row[0] < size]
        for seq, _rid, data, stored, _record, _columns in page:
            parts = split_leaf(data)
            record = json.loads(parts[1]) if parts is not None else None
            line = {"index": seq, "leaf_hash": b64(stored), "record": record}
            chunk.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        if chunk:
            yield "".join(chunk).encode("utf-8")
        if len(page) < PAGE or page[-1][0] >= size - 1:
            return
        after = page[-1][0]

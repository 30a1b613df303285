"""The sequencer and the checkpointer: one background task per process, one active per log.

Ingestion and decisions only insert durable rows and queue them in ``audit_pending``. Shortly
after commit, the sequencer takes each log's queue in arrival order and appends the records as
leaves at the next sequence numbers. Exactly one sequencer works on a log at a time across all
replicas: the work runs in a transaction holding the log's PostgreSQL advisory lock (a replica
that does not get it skips the log this round); on SQLite, writers are serialised by the
process's writer lock and ``BEGIN IMMEDIATE``. The primary key (domain, seq) is the backstop:
a second writer at the same index would fail, never fork the log. On PostgreSQL one statement
makes the leaves in the database (``repository.sequence_pending``: the same bytes and hashes as
``log.leaf_canonical`` and ``merkle.leaf_hash``), so the records never travel to this process.

The checkpointer signs a checkpoint, under the same lock and from this process's tree cache,
for a log that has grown: at once when its last checkpoint is older than
``audit_checkpoint_seconds``, otherwise when that time has passed; so a log's checkpoint is
never more than that far behind, and a quiet log gets one as soon as it grows. A full pass over
every log each interval picks up growth sequenced by other replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.audit import repository
from control_plane.audit.keys import CheckpointKey, ensure_key, log_origin
from control_plane.audit.log import leaf_canonical
from control_plane.audit.merkle import leaf_hash
from control_plane.audit.note import Checkpoint, b64, sign_note
from control_plane.audit.records import AuditContext
from control_plane.audit.trees import LogTrees
from control_plane.events import service as events
from control_plane.kit.db import SessionMaker
from control_plane.kit.logging import FailureStreak
from control_plane.kit.time import utcnow
from control_plane.models import AuditCheckpoint

log = structlog.get_logger(__name__)

BATCH = 2_000


class AuditWorker:
    def __init__(
        self,
        sessionmaker: SessionMaker,
        ctx: AuditContext,
        trees: LogTrees,
        kek: str,
        *,
        interval: float,
        checkpoint_seconds: float,
        writer_lock: asyncio.Lock | None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._ctx = ctx
        self._trees = trees
        self._kek = kek
        self._interval = interval
        self._checkpoint_seconds = checkpoint_seconds
        self._writer_lock = writer_lock
        self._key: CheckpointKey | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_checkpoint_pass = 0.0
        self._dirty: set[str] = set()
        self._signed_at: dict[str, float] = {}  # monotonic time of a log's last checkpoint

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-worker")

    async def stop(self) -> None:
        """Finish the round in progress, then stop."""
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=10)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def _run(self) -> None:
        streak = FailureStreak(log, "audit_worker_round_failed")
        while not self._stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:
                # The database may be down (a restart); the rows wait durably. Try again.
                streak.failed(exc)
            else:
                streak.succeeded()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._interval)

    def _writer(self) -> Any:
        return self._writer_lock if self._writer_lock is not None else contextlib.nullcontext()

    async def run_once(self, *, checkpoint: bool = False) -> int:
        """One round: sequence every log with queued records, then checkpoint the logs that
        grew and are due (``checkpoint``: every log that grew, now). Returns the number of
        records sequenced."""
        if self._key is None:
            await self._signing_key()  # published before the first checkpoint needs it
        async with self._sessionmaker() as session:
            domains = await repository.pending_domains(session)
        sequenced = 0
        for domain in domains:
            count = await self._sequence(domain)
            if count:
                self._dirty.add(domain)
            sequenced += count
        now = time.monotonic()
        full_pass = now - self._last_checkpoint_pass >= self._checkpoint_seconds
        if checkpoint or full_pass:
            self._last_checkpoint_pass = now
            async with self._sessionmaker() as session:
                self._dirty.update(await repository.log_domains(session))
        for domain in sorted(self._dirty):
            recent = now - self._signed_at.get(domain, -1e9) < self._checkpoint_seconds
            if recent and not checkpoint:
                continue
            if await self._checkpoint(domain, force=checkpoint):
                self._dirty.discard(domain)
        return sequenced

    async def _sequence(self, domain: str) -> int:
        total = 0
        while True:
            async with self._writer(), self._sessionmaker() as session:
                if not await repository.try_log_lock(session, domain):
                    return total
                start = await repository.log_size(session, domain)
                if repository.sequences_in_database(session):
                    count = await repository.sequence_pending(
                        session, domain, start, BATCH, utcnow()
                    )
                else:
                    count = await self._append(session, domain, start)
                await session.commit()
            total += count
            if count < BATCH:
                return total

    async def _append(self, session: AsyncSession, domain: str, start: int) -> int:
        """Make the leaves of the oldest queued records here (SQLite) and append them."""
        batch = await repository.pending_batch(session, domain, BATCH)
        leaves = []
        for offset, (_pid, record_id, record) in enumerate(batch):
            data = leaf_canonical(start + offset, record.encode("utf-8"))
            leaves.append((start + offset, record_id, data, leaf_hash(data)))
        await repository.append_leaves(session, domain, leaves, [p for p, _, _ in batch], utcnow())
        return len(batch)

    async def _signing_key(self) -> CheckpointKey:
        if self._key is None:
            async with self._writer(), self._sessionmaker() as session:
                key = await ensure_key(session, self._kek)
                await session.commit()
            if key.private is None:
                raise RuntimeError("the checkpoint key cannot be decrypted with this KEK")
            self._key = key
        return self._key

    async def _checkpoint(self, domain: str, *, force: bool) -> bool:
        """Sign a checkpoint of ``domain`` if it grew; False when it must wait (another replica
        signed one less than the interval ago, or holds the log's lock)."""
        key = await self._signing_key()
        assert key.private is not None
        async with self._writer(), self._sessionmaker() as session:
            if not await repository.try_log_lock(session, domain):
                return False
            size = await repository.log_size(session, domain)
            latest = await repository.latest_checkpoint(session, domain)
            if latest is not None and latest.size >= size:
                return True
            if latest is not None and not force:
                age = (utcnow() - latest.created_at).total_seconds()
                if age < self._checkpoint_seconds:
                    self._signed_at[domain] = time.monotonic() - max(age, 0.0)
                    return False
            tree = await self._trees.get(session, domain, size)
            size = min(size, tree.size)
            if latest is not None and latest.size >= size:
                return True
            origin = await log_origin(session, self._ctx, domain)
            root = tree.root(size)
            note = sign_note(Checkpoint(origin, size, root).text(), origin, key.private)
            await repository.add_checkpoint(
                session,
                AuditCheckpoint(
                    domain=domain, size=size, root_hash=root, key_id=key.kid, note=note
                ),
            )
            await events.emit(
                session,
                "audit.checkpoint.v1",
                {"domain": domain, "size": size, "root_hash": b64(root), "key_id": key.kid},
                domain=domain,
                subject=f"{domain}/{size}",
            )
            await session.commit()
        self._signed_at[domain] = time.monotonic()
        log.info("audit_checkpoint_signed", domain=domain, size=size)
        return True

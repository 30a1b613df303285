"""Shadow evaluation: every decision evaluated again with the bundle's shadow revision, off the
answer's critical path, differences stored once.

The decision path hands a `ShadowJob` over only after its answer is committed (the decisions
endpoint schedules `ShadowEvaluator.submit` as a response background task, which runs once the
response is sent, on the event loop, and does nothing but a non-blocking put). What it costs
the decision path is kept small (``bench/shadow.py`` measures it, off and on side by side):

- the queue is bounded: when it is full the job is dropped, counted
  (``agentctl_shadow_evaluations{outcome="dropped"}``) and logged (``shadow_queue_full``, at
  most every ``DROP_LOG_SECONDS``), so a slow shadow engine never slows decisions;
- one worker task evaluates the jobs with the runtime's ``shadow`` engine (its own worker
  threads, as every wasm evaluation) and keeps only the differences: the effect or the reasons
  differ from what the engine answered for the decision (before approvals and budgets, which
  do not depend on the revision);
- differences are written in large, rare batches (``WRITE_BATCH`` rows, or after
  ``FLUSH_SECONDS``), one statement per batch; on SQLite the write waits (up to
  ``DEFER_SECONDS``) until no request holds or waits for the process's writer turn
  (``Database.writing(defer=...)``), so decisions go first;
- the unique (decision, shadow revision) key keeps each difference once.

A job counts as done (`drain`) once its difference is written. `aclose` (the app's shutdown)
drains the queue first, for at most ``CLOSE_DRAIN_SECONDS``; what is left then is counted as
dropped and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import structlog

from control_plane.kit.database import Database
from control_plane.kit.ids import uuid7
from control_plane.kit.time import utcnow
from control_plane.observability import metrics
from control_plane.policy import repository
from control_plane.policy.runtime import PolicyRuntime

log = structlog.get_logger(__name__)

DEFAULT_QUEUE_SIZE: Final = 10_000
#: Jobs taken from the queue at once and evaluated one after the other.
EVALUATE_BATCH: Final = 64
#: Differences written together, in one statement and one transaction.
WRITE_BATCH: Final = 500
#: How long a difference may wait for others before it is written anyway.
FLUSH_SECONDS: Final = 1.0
#: SQLite: how long a write waits for the writer turn to be free before it queues for it.
DEFER_SECONDS: Final = 2.0
#: How long a shadow evaluation waits for its revision to load into the shadow engine.
SHADOW_LOAD_WAIT_SECONDS: Final = 60.0
#: Shutdown: how long `aclose` lets the queue drain.
CLOSE_DRAIN_SECONDS: Final = 10.0
#: A full queue is logged at most this often (with the count dropped since the last line).
DROP_LOG_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """One decision to evaluate with ``shadow_revision``: its input (and the text the engine
    read), and what the engine answered with ``revision``."""

    decision_id: uuid.UUID
    bundle: str
    revision: int | None
    shadow_revision: int
    action: str
    agent_id: uuid.UUID
    domain: str
    input_doc: dict[str, Any]
    encoded: str
    effect: str
    reasons: tuple[str, ...]
    decided_at: datetime


class ShadowEvaluator:
    """The bounded queue and its worker (`start`, `drain`, `aclose`)."""

    def __init__(
        self,
        database: Database,
        runtime: PolicyRuntime,
        *,
        size: int = DEFAULT_QUEUE_SIZE,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self._database = database
        self._runtime = runtime
        self._flush_seconds = flush_seconds
        # None wakes the worker (`drain`); it is not a job.
        self._queue: asyncio.Queue[ShadowJob | None] = asyncio.Queue(maxsize=size)
        self._task: asyncio.Task[None] | None = None
        # Differences evaluated, not yet written; their jobs are not done (`drain`) until then.
        self._pending: list[dict[str, Any]] = []
        self._oldest = 0.0
        self._draining = 0
        self._closed = False
        self._dropped_unlogged = 0
        self._drop_logged_at: float | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="shadow-evaluator")

    async def submit(self, job: ShadowJob) -> None:
        """Queue ``job``, or drop, count and log it when the queue is full (or the evaluator
        is closed). Never waits: a coroutine so that a response background task runs it on the
        event loop (a plain function would run in a thread, and the queue is the loop's)."""
        if self._closed:
            self._dropped(1, reason="closed")
            return
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self._dropped(1, reason="queue_full")

    def _dropped(self, count: int, *, reason: str) -> None:
        for _ in range(count):
            metrics.observe_shadow("dropped")
        self._dropped_unlogged += count
        now = time.monotonic()
        if self._drop_logged_at is None or now - self._drop_logged_at >= DROP_LOG_SECONDS:
            log.warning(
                "shadow_queue_full" if reason == "queue_full" else "shadow_jobs_dropped",
                dropped=self._dropped_unlogged,
                reason=reason,
                queue_size=self._queue.maxsize,
            )
            self._dropped_unlogged = 0
            self._drop_logged_at = now

    async def drain(self) -> None:
        """Wait until every queued job is evaluated and its difference written (tests,
        shutdown)."""
        self._draining += 1
        try:
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)  # wake a worker waiting for its flush time
            await self._queue.join()
        finally:
            self._draining -= 1

    def _flush_in(self) -> float | None:
        """Seconds until the pending differences are due (None: nothing pending)."""
        if not self._pending:
            return None
        if self._draining:
            return 0.0
        return max(0.0, self._oldest + self._flush_seconds - time.monotonic())

    async def _run(self) -> None:
        while True:
            jobs: list[ShadowJob | None] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_in()):
                    jobs.append(await self._queue.get())
            while jobs and len(jobs) < EVALUATE_BATCH and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            real = [job for job in jobs if job is not None]
            for _ in range(len(jobs) - len(real)):
                self._queue.task_done()
            if real:
                await self._evaluate(real)
            if len(self._pending) >= WRITE_BATCH or self._flush_in() == 0.0:
                await self._write()

    async def _evaluate(self, batch: list[ShadowJob]) -> None:
        """Evaluate ``batch``; keep its differences for the next write, and mark the rest
        done."""
        finished = 0
        try:
            async with self._database.read_sessionmaker() as session:
                for job in batch:
                    result = await self._runtime.decide_at(
                        session,
                        job.shadow_revision,
                        job.input_doc,
                        encoded=job.encoded,
                        role="shadow",
                        # Off the answer's path: wait for a slow load rather than record a
                        # difference that is only "still loading".
                        load_wait=SHADOW_LOAD_WAIT_SECONDS,
                    )
                    finished += 1
                    if str(result.effect) == job.effect and tuple(result.reasons) == job.reasons:
                        metrics.observe_shadow("same")
                        self._queue.task_done()
                        continue
                    if not self._pending:
                        self._oldest = time.monotonic()
                    self._pending.append(_diff(job, str(result.effect), list(result.reasons)))
        except Exception as exc:  # never let one batch stop the worker
            for _ in batch[finished:]:
                metrics.observe_shadow("failed")
                self._queue.task_done()
            log.warning("shadow_evaluation_failed", error_type=type(exc).__name__)

    async def _write(self) -> None:
        """Write the pending differences: one statement, one transaction, on SQLite in a
        writer turn taken when no request waits for it."""
        rows, self._pending = self._pending, []
        try:
            async with self._database.writing(defer=DEFER_SECONDS) as session:
                inserted = await repository.add_shadow_diffs(session, rows)
                await session.commit()
        except Exception as exc:
            for _ in rows:
                metrics.observe_shadow("failed")
            log.warning("shadow_write_failed", error_type=type(exc).__name__, rows=len(rows))
        else:
            for _ in range(inserted):
                metrics.observe_shadow("different")
            # Evaluated again (a retry): on record already, nothing new.
            for _ in range(len(rows) - inserted):
                metrics.observe_shadow("same")
        finally:
            for _ in rows:
                self._queue.task_done()

    async def aclose(self, drain_seconds: float = CLOSE_DRAIN_SECONDS) -> None:
        """Stop taking jobs, let the queue drain (at most ``drain_seconds``), then stop the
        worker; jobs left are counted as dropped and logged."""
        self._closed = True
        if self._task is None:
            return
        if not self._task.done():
            try:
                async with asyncio.timeout(drain_seconds):
                    await self.drain()
            except TimeoutError:
                pass
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        self._task = None
        left = sum(1 for job in _queued(self._queue) if job is not None) + len(self._pending)
        if left:
            self._drop_logged_at = None  # always said at shutdown
            self._dropped(left, reason="shutdown")


def _queued(queue: asyncio.Queue[ShadowJob | None]) -> list[ShadowJob | None]:
    items: list[ShadowJob | None] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _diff(job: ShadowJob, effect: str, reasons: list[str]) -> dict[str, Any]:
    return {
        "id": uuid7(),
        "bundle": job.bundle,
        "decision_id": job.decision_id,
        "revision": job.revision,
        "shadow_revision": job.shadow_revision,
        "action": job.action,
        "agent_id": job.agent_id,
        "domain": job.domain,
        "old_effect": job.effect,
        "new_effect": effect,
        "old_reasons": list(job.reasons),
        "new_reasons": reasons,
        "decided_at": job.decided_at,
        "created_at": utcnow(),
    }

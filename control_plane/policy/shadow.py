"""Shadow evaluation: every decision evaluated again with the bundle's shadow revision, off the
answer's critical path, differences stored once.

The decision path hands a `ShadowJob` over only after its answer is committed (the decisions
endpoint schedules `ShadowEvaluator.submit` as a response background task, which runs once the
response is sent and does nothing but a non-blocking put). The queue is bounded: when it is
full the job is dropped and counted (``agentctl_shadow_evaluations{outcome="dropped"}``), so a
slow shadow engine never slows decisions. One worker task evaluates the jobs in batches (their
differences written in one transaction, so on SQLite one writer turn per batch) with the runtime's
``shadow`` engine and writes a `ShadowDiff` when the effect or the reasons differ from what the
engine answered for the decision (before approvals and budgets, which do not depend on the
revision); the unique (decision, shadow revision) key keeps each difference once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from control_plane.kit.database import Database
from control_plane.kit.ids import uuid7
from control_plane.kit.time import utcnow
from control_plane.observability import metrics
from control_plane.policy import repository
from control_plane.policy.runtime import PolicyRuntime

log = structlog.get_logger(__name__)

DEFAULT_QUEUE_SIZE = 10_000
#: Jobs evaluated together, their differences written in one transaction.
BATCH = 100
#: How long the worker waits after a first job for others to join its batch.
LINGER_SECONDS = 0.2
#: How long a shadow evaluation waits for its revision to load into the shadow engine.
SHADOW_LOAD_WAIT_SECONDS = 60.0


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
    """The bounded queue and its worker (`start`, `aclose`)."""

    def __init__(
        self, database: Database, runtime: PolicyRuntime, *, size: int = DEFAULT_QUEUE_SIZE
    ) -> None:
        self._database = database
        self._runtime = runtime
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=size)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="shadow-evaluator")

    def submit(self, job: ShadowJob) -> None:
        """Queue ``job``, or drop and count it when the queue is full. Never blocks."""
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            metrics.observe_shadow("dropped")

    async def drain(self) -> None:
        """Wait until every queued job is evaluated (tests, shutdown)."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            # Linger a moment so a busy path's differences go in one write, not one each.
            await asyncio.sleep(LINGER_SECONDS)
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._evaluate(batch)
            except Exception as exc:  # never let one batch stop the worker
                for _ in batch:
                    metrics.observe_shadow("failed")
                log.warning("shadow_evaluation_failed", error_type=type(exc).__name__)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _evaluate(self, batch: list[ShadowJob]) -> None:
        """Evaluate a batch; write its differences in one transaction (one writer turn)."""
        rows = []
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
                if str(result.effect) == job.effect and tuple(result.reasons) == job.reasons:
                    metrics.observe_shadow("same")
                    continue
                rows.append(_diff(job, str(result.effect), list(result.reasons)))
        if not rows:
            return
        async with self._database.writing() as session:
            inserted = [await repository.add_shadow_diff(session, row) for row in rows]
            await session.commit()
        for new in inserted:
            metrics.observe_shadow("different" if new else "same")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None


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

"""Shadow evaluation: every decision evaluated again with the bundle's shadow revision, off the
answer's critical path, differences stored once.

The decision path hands a `ShadowJob` over only after its answer is committed (the decisions
endpoint schedules `ShadowEvaluator.submit` as a response background task, which runs once the
response is sent, on the event loop, and does nothing but a non-blocking put). What it costs
the decision path is kept small (``bench/shadow.py`` measures it, off and on side by side):

- the queue is bounded: when it is full the job is dropped, counted
  (``agentctl_shadow_evaluations{outcome="dropped"}``) and logged (``shadow_queue_full``, at
  most every ``DROP_LOG_SECONDS``), so a slow shadow engine never slows decisions;
- one worker task does the shadow's work in bursts: after a first job it lingers
  ``LINGER_SECONDS`` for others, then evaluates them (up to ``MAX_BURST``) one after the other
  with the runtime's ``shadow`` engine (its own worker threads, as every wasm evaluation). The
  evaluations compete with requests for the process's CPU and GIL; in one burst a second only
  the few decisions made during it meet them, where spread out every decision would;
- it keeps only the differences (the effect or the reasons differ from what the engine
  answered for the decision, before approvals and budgets, which do not depend on the
  revision) and writes them ``WRITE_CHUNK`` rows a statement and a transaction; on SQLite each
  write first waits (up to ``DEFER_SECONDS``) until no request holds or waits for the
  process's writer turn (``Database.writing(defer=...)``), so decisions go first;
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
#: Most jobs evaluated in one burst.
MAX_BURST: Final = 1000
#: Differences written in one statement and one transaction.
WRITE_CHUNK: Final = 200
#: How long the worker lingers after a first job for others to join its burst.
LINGER_SECONDS: Final = 1.0
#: SQLite: how long a write waits for the writer turn to be free before it queues for it.
DEFER_SECONDS: Final = 2.0
#: How long a shadow evaluation waits for its revision to load into the shadow engine.
SHADOW_LOAD_WAIT_SECONDS: Final = 60.0
#: Shutdown: how long `aclose` lets the queue drain.
CLOSE_DRAIN_SECONDS: Final = 5.0
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
        linger_seconds: float = LINGER_SECONDS,
    ) -> None:
        self._database = database
        self._runtime = runtime
        self._linger_seconds = linger_seconds
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=size)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._draining = 0
        self._in_flight = 0  # jobs taken from the queue, not yet done
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
        self._wake.set()  # a worker lingering for more jobs goes on at once
        try:
            await self._queue.join()
        finally:
            self._draining -= 1

    async def _run(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            if not self._draining:
                # Linger: the shadow's work for a second of decisions in one burst (a few
                # decisions meet it) rather than a little after each one (every one would).
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._linger_seconds)
            while len(jobs) < MAX_BURST and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            self._in_flight = len(jobs)
            rows = await self._evaluate(jobs)
            await self._write(rows)
            self._in_flight = 0
            for _ in jobs:
                self._queue.task_done()

    async def _evaluate(self, batch: list[ShadowJob]) -> list[dict[str, Any]]:
        """Evaluate ``batch``; its differences, to write."""
        rows: list[dict[str, Any]] = []
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
                    else:
                        rows.append(_diff(job, str(result.effect), list(result.reasons)))
        except Exception as exc:  # never let one batch stop the worker
            for _ in batch[finished:]:
                metrics.observe_shadow("failed")
            log.warning("shadow_evaluation_failed", error_type=type(exc).__name__)
        return rows

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        """Write differences, ``WRITE_CHUNK`` rows a statement and a transaction; on SQLite
        each in a writer turn taken when no request waits for it."""
        for start in range(0, len(rows), WRITE_CHUNK):
            chunk = rows[start : start + WRITE_CHUNK]
            try:
                async with self._database.writing(defer=DEFER_SECONDS) as session:
                    inserted = await repository.add_shadow_diffs(session, chunk)
                    await session.commit()
            except Exception as exc:
                for _ in chunk:
                    metrics.observe_shadow("failed")
                log.warning("shadow_write_failed", error_type=type(exc).__name__, rows=len(chunk))
                continue
            for _ in range(inserted):
                metrics.observe_shadow("different")
            # Evaluated again (a retry): on record already, nothing new.
            for _ in range(len(chunk) - inserted):
                metrics.observe_shadow("same")

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
        left = self._queue.qsize() + self._in_flight
        if left:
            self._drop_logged_at = None  # always said at shutdown
            self._dropped(left, reason="shutdown")


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

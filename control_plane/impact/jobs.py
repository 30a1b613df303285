"""Background impact analyses: an in-process job table, one per replica.

Chosen over a table in the database because a job is a cache of a computation anyone can run
again, not a record: it costs no migration and no writes on the shared database. What that
means, as the README says: a job lives in the memory of the replica that started it (a ``GET``
on another replica answers 404; a restart loses it), its id is a random UUID, only the operator
who started it can read it, at most ``MAX_RUNNING`` run at once per replica (429 otherwise), and
the last ``MAX_KEPT`` finished jobs are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import structlog

from control_plane.impact.schemas import ImpactJob, ImpactReport
from control_plane.kit.errors import NotFound, TooManyRequests
from control_plane.kit.time import utcnow

log = structlog.get_logger(__name__)

MAX_RUNNING: Final = 2
MAX_KEPT: Final = 100


@dataclass
class _Job:
    id: uuid.UUID
    owner: uuid.UUID
    bundle: str
    revision: int
    total: int
    created_at: datetime
    done: int = 0
    status: str = "running"
    finished_at: datetime | None = None
    error: str | None = None
    report: ImpactReport | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def public(self) -> ImpactJob:
        return ImpactJob.model_validate(
            {
                "id": self.id,
                "status": self.status,
                "bundle": self.bundle,
                "revision": self.revision,
                "done": self.done,
                "total": self.total,
                "created_at": self.created_at,
                "finished_at": self.finished_at,
                "error": self.error,
                "report": self.report,
            }
        )


Work = Callable[[Callable[[int], None]], Awaitable[ImpactReport]]


class ImpactJobs:
    """The job table (see the module doc)."""

    def __init__(self) -> None:
        self._jobs: OrderedDict[uuid.UUID, _Job] = OrderedDict()

    def start(
        self, owner: uuid.UUID, bundle: str, revision: int, total: int, work: Work
    ) -> ImpactJob:
        """Start ``work(progress)`` as a job; raises ``TooManyRequests`` (429) when
        ``MAX_RUNNING`` jobs already run in this replica."""
        running = sum(1 for j in self._jobs.values() if j.status == "running")
        if running >= MAX_RUNNING:
            raise TooManyRequests(
                f"{running} impact analyses are running on this replica; retry when one ends.",
                retry_after=5,
            )
        job = _Job(uuid.uuid4(), owner, bundle, revision, total, utcnow())
        job.task = asyncio.create_task(self._run(job, work), name=f"impact-{job.id}")
        self._jobs[job.id] = job
        self._trim()
        return job.public()

    async def _run(self, job: _Job, work: Work) -> None:
        def progress(done: int) -> None:
            job.done = done

        try:
            job.report = await work(progress)
            job.done = job.report.total
            job.status = "succeeded"
        except asyncio.CancelledError:
            job.status, job.error = "failed", "cancelled: the service stopped"
            raise
        except Exception as exc:  # a job reports its failure; it never takes the process down
            log.error("policy_impact_failed", job=str(job.id), error_type=type(exc).__name__)
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"[:500]
        finally:
            job.finished_at = utcnow()
            job.task = None

    def _trim(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.status != "running"]
        for key in finished[: max(0, len(finished) - MAX_KEPT)]:
            del self._jobs[key]

    def get(self, owner: uuid.UUID, job_id: uuid.UUID, bundle: str, revision: int) -> ImpactJob:
        """The job, if ``owner`` started it for this bundle and revision; else 404."""
        job = self._jobs.get(job_id)
        if job is None or job.owner != owner or (job.bundle, job.revision) != (bundle, revision):
            raise NotFound("Impact job not found (jobs live in the replica that started them).")
        return job.public()

    async def aclose(self) -> None:
        """Cancel running jobs (at shutdown)."""
        tasks = [j.task for j in self._jobs.values() if j.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

"""The console's audit verification, run in the background so the page can show progress.

A job verifies each visible domain log in turn (``audit.verification.verify_logs``, the same
check as ``GET /v1/audit/verify``), each in its own read session, and records how many logs are
done. Jobs live in this process's memory and are dropped ten minutes after they finish; only
the operator who started a job can read it. A poll that reaches another worker of the service
(``agentctl serve --workers N``) finds no job there and gets ``run_now``: the same verification
done within that request (no progress shown, the same answer).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.applications import Starlette

from control_plane.audit import verification
from control_plane.audit.schemas import LogVerification
from control_plane.auth.principals import OperatorPrincipal
from control_plane.state import AppState, app_state

log = structlog.get_logger(__name__)

_KEEP_SECONDS = 600.0
_MAX_JOBS = 100


@dataclass
class Job:
    id: uuid.UUID
    operator_id: uuid.UUID
    domains: list[str]
    domain: str | None = None  # the one log asked for, if any (polls carry it)
    logs: list[LogVerification] = field(default_factory=list)
    done: bool = False
    failed: bool = False
    finished_at: float | None = None
    task: asyncio.Task[None] | None = None

    @property
    def ok(self) -> bool:
        return (
            self.done
            and not self.failed
            and all(v.first_bad_index is None and v.reason is None for v in self.logs)
        )

    @property
    def percent(self) -> int:
        if not self.domains:
            return 100
        return int(100 * len(self.logs) / len(self.domains))


def _jobs(app: Starlette) -> dict[uuid.UUID, Job]:
    jobs: dict[uuid.UUID, Job] | None = getattr(app.state, "console_verify_jobs", None)
    if jobs is None:
        jobs = {}
        app.state.console_verify_jobs = jobs
    now = time.monotonic()
    old = [k for k, j in jobs.items() if j.finished_at and now - j.finished_at > _KEEP_SECONDS]
    for key in old:
        del jobs[key]
    return jobs


def start(
    app: Starlette, who: OperatorPrincipal, domains: list[str], domain: str | None = None
) -> Job:
    """Start verifying ``domains`` (already checked visible to ``who``) in the background."""
    jobs = _jobs(app)
    if len(jobs) >= _MAX_JOBS:
        oldest = min(jobs.values(), key=lambda j: j.finished_at or float("inf"))
        jobs.pop(oldest.id, None)
    job = Job(id=uuid.uuid4(), operator_id=who.id, domains=domains, domain=domain)
    jobs[job.id] = job
    job.task = asyncio.create_task(_run(app, who, job))
    return job


def find(app: Starlette, who: OperatorPrincipal, job_id: uuid.UUID) -> Job | None:
    job = _jobs(app).get(job_id)
    return job if job is not None and job.operator_id == who.id else None


async def run_now(
    session: AsyncSession,
    state: AppState,
    who: OperatorPrincipal,
    domains: list[str],
    domain: str | None = None,
) -> Job:
    """Verify ``domains`` within the caller's request and session; a finished job."""
    job = Job(id=uuid.uuid4(), operator_id=who.id, domains=domains, domain=domain)
    for name in domains:
        result = await verification.verify_logs(session, who, state.audit_context, state.kek, name)
        job.logs.extend(result.logs)
    job.done = True
    job.finished_at = time.monotonic()
    return job


async def _run(app: Starlette, who: OperatorPrincipal, job: Job) -> None:
    state = app_state(app)
    try:
        for domain in job.domains:
            async with state.database.read_sessionmaker() as session:
                result = await verification.verify_logs(
                    session, who, state.audit_context, state.kek, domain
                )
            job.logs.extend(result.logs)
    except Exception as exc:  # the page shows the failure; the job never hangs "running"
        job.failed = True
        log.warning("console_verify_failed", error_type=type(exc).__name__)
    finally:
        job.done = True
        job.finished_at = time.monotonic()

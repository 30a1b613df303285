"""Keeps the process's policy engine on the active revision of the decision bundle.

Each decision reads the bundle's active revision number (one primary-key lookup), so an
activation or rollback on any replica shows in the very next decision there. When it differs
from what the engine has loaded, the revision is loaded first, under a lock so concurrent
decisions trigger one load. A bundle with no active revision, or a revision that fails to load,
gives a deny (fail closed) like any other engine failure.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.policy import repository
from control_plane.policy.engine import (
    ENGINE_ERROR,
    EngineResult,
    LoadedBundle,
    PolicyEngine,
    PolicyLoadError,
    fail_closed,
)

log = structlog.get_logger(__name__)

NO_ACTIVE_POLICY = "no_active_policy"


class PolicyRuntime:
    def __init__(self, engine: PolicyEngine, bundle: str) -> None:
        self.engine = engine
        self.bundle = bundle
        self._lock = asyncio.Lock()

    async def _ensure_loaded(self, session: AsyncSession, number: int) -> str | None:
        """Load revision ``number`` unless loaded; returns a failure detail or None."""
        if self.engine.revision == str(number):
            return None
        async with self._lock:
            if self.engine.revision == str(number):
                return None
            revision = await repository.get_revision(session, self.bundle, number)
            if revision is None:
                return f"revision {number} of bundle {self.bundle} is missing"
            try:
                await self.engine.load(
                    LoadedBundle(
                        modules=revision.modules,
                        data=revision.data,
                        revision=str(number),
                        digest=revision.digest,
                    )
                )
            except PolicyLoadError as exc:
                log.error("policy_load_failed", bundle=self.bundle, revision=number)
                return f"revision {number} failed to load: {exc}"
            log.info("policy_loaded", bundle=self.bundle, revision=number, engine=self.engine.name)
            return None

    async def decide(self, session: AsyncSession, input_doc: dict[str, object]) -> EngineResult:
        started = time.perf_counter()
        number = await repository.active_revision_number(session, self.bundle)
        if number is None:
            return fail_closed(
                NO_ACTIVE_POLICY,
                f"bundle {self.bundle} has no active revision",
                self.engine.name,
                None,
                time.perf_counter() - started,
            )
        problem = await self._ensure_loaded(session, number)
        if problem is not None:
            return fail_closed(
                ENGINE_ERROR, problem, self.engine.name, str(number), time.perf_counter() - started
            )
        return await self.engine.evaluate(input_doc)

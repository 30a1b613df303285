"""Keeps the process's policy engine on the active revision of the decision bundle.

Each decision reads the bundle's active revision number (one primary-key lookup), so an
activation or rollback on any replica shows in the very next decision there. When it differs
from what the engine has loaded, one background task loads it; decisions wait for that task for
at most ``load_wait`` seconds and otherwise deny (``engine_not_loaded``), so a hanging OPA or a
slow compile never holds a decision longer than that. A failed load is retried by the next
decision. A bundle with no active revision is a deny too: nothing here ever fails open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.policy import repository
from control_plane.policy.engines import (
    EngineResult,
    FailureCode,
    LoadedBundle,
    PolicyEngine,
    fail_closed,
)

log = structlog.get_logger(__name__)

NO_ACTIVE_POLICY = FailureCode.no_active_policy


class PolicyRuntime:
    def __init__(self, engine: PolicyEngine, bundle: str, *, load_wait: float = 2.0) -> None:
        self.engine = engine
        self.bundle = bundle
        self._load_wait = load_wait
        self._loading: tuple[int, asyncio.Task[None]] | None = None

    async def _load(self, bundle: LoadedBundle) -> None:
        await self.engine.load(bundle)
        log.info("policy_loaded", bundle=self.bundle, revision=bundle.revision)

    async def _ensure_loaded(
        self, session: AsyncSession, number: int
    ) -> tuple[FailureCode, str] | None:
        """None once revision ``number`` is loaded, else (failure code, detail)."""
        if self.engine.revision == str(number):
            return None
        current = self._loading
        if current is None or current[0] != number or current[1].done():
            revision = await repository.get_revision(session, self.bundle, number)
            if revision is None:
                return (
                    FailureCode.engine_error,
                    f"revision {number} of bundle {self.bundle} is missing",
                )
            bundle = LoadedBundle(
                modules=revision.modules,
                data=revision.data,
                revision=str(number),
                digest=revision.digest,
                wasm=revision.wasm,
            )
            current = self._loading
            if current is None or current[0] != number or current[1].done():
                current = (number, asyncio.create_task(self._load(bundle)))
                self._loading = current
        task = current[1]
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self._load_wait)
        except TimeoutError:
            return FailureCode.engine_not_loaded, f"revision {number} is still loading"
        except Exception as exc:  # the load failed: deny now, the next decision retries
            log.error("policy_load_failed", bundle=self.bundle, revision=number)
            return FailureCode.engine_error, f"revision {number} failed to load: {exc}"
        return None

    async def decide(self, session: AsyncSession, input_doc: dict[str, object]) -> EngineResult:
        number = await repository.active_revision_number(session, self.bundle)
        return await self.decide_at(session, number, input_doc)

    async def decide_at(
        self,
        session: AsyncSession,
        number: int | None,
        input_doc: dict[str, object],
        *,
        encoded: str | None = None,
    ) -> EngineResult:
        """`decide` with the bundle's active revision ``number`` already read by the caller (in
        the same transaction); None: the bundle has no active revision, a deny. ``encoded``:
        the input as `encode_input` wrote it, when the caller has it."""
        started = time.perf_counter()
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
            code, detail = problem
            return fail_closed(
                code, detail, self.engine.name, str(number), time.perf_counter() - started
            )
        return await self.engine.evaluate(input_doc, encoded=encoded)

    async def warm(self, session: AsyncSession, within: float) -> str | None:
        """Load the bundle's active revision before the first decision (start-up).

        Waits while the load is in progress, up to ``within`` seconds in all; None once the
        engine holds the revision (or there is none), else why not. A failed load is not
        retried here: the first decision retries it, as after any failed load."""
        number = await repository.active_revision_number(session, self.bundle)
        if number is None:
            return None
        deadline = time.monotonic() + within
        while True:
            problem = await self._ensure_loaded(session, number)
            if problem is None:
                return None
            if problem[0] != FailureCode.engine_not_loaded or time.monotonic() >= deadline:
                return problem[1]

    async def ready(self, session: AsyncSession) -> str | None:
        """None when the engine holds the active revision (loading it if needed), else why not.

        Checks the engine rather than trusting what was loaded: a restarted OPA is empty.
        """
        number = await repository.active_revision_number(session, self.bundle)
        if number is None:
            return None  # nothing to load: decisions deny with no_active_policy, by design
        if self.engine.revision == str(number) and not await self.engine.verify():
            log.warning("policy_engine_lost_revision", bundle=self.bundle, revision=number)
        problem = await self._ensure_loaded(session, number)
        if problem is not None:
            return problem[1]
        if not await self.engine.verify():
            return f"the {self.engine.name} engine does not hold revision {number}"
        return None

    async def aclose(self) -> None:
        if self._loading is not None:
            self._loading[1].cancel()
            with contextlib.suppress(BaseException):
                await self._loading[1]
        await self.engine.aclose()

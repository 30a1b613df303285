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
from collections.abc import Callable

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


class _Slot:
    """One engine and the revision it holds or is loading."""

    def __init__(self, engine: PolicyEngine) -> None:
        self.engine = engine
        self.loading: tuple[int, asyncio.Task[None]] | None = None


class PolicyRuntime:
    """The engine of the active revision, and (built on first use by ``engine_factory``) one
    engine for the canary revision and one for the shadow revision (``policy.canary``), each
    kept on its revision the same way. Without a factory, the canary and shadow use the main
    engine's slot, so they reload it: fine for tests, not for serving."""

    def __init__(
        self,
        engine: PolicyEngine,
        bundle: str,
        *,
        load_wait: float = 2.0,
        engine_factory: Callable[[], PolicyEngine] | None = None,
    ) -> None:
        self.bundle = bundle
        self._load_wait = load_wait
        self._main = _Slot(engine)
        self._slots: dict[str, _Slot] = {"active": self._main}
        self._factory = engine_factory

    @property
    def engine(self) -> PolicyEngine:
        """The engine of the active revision."""
        return self._main.engine

    def _slot(self, role: str) -> _Slot:
        slot = self._slots.get(role)
        if slot is None:
            slot = _Slot(self._factory()) if self._factory is not None else self._main
            self._slots[role] = slot
        return slot

    async def _load(self, engine: PolicyEngine, bundle: LoadedBundle) -> None:
        await engine.load(bundle)
        log.info("policy_loaded", bundle=self.bundle, revision=bundle.revision)

    async def _ensure_loaded(
        self,
        session: AsyncSession,
        number: int,
        slot: _Slot | None = None,
        wait: float | None = None,
    ) -> tuple[FailureCode, str] | None:
        """None once revision ``number`` is loaded, else (failure code, detail)."""
        slot = slot or self._main
        if slot.engine.revision == str(number):
            return None
        current = slot.loading
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
            current = slot.loading
            if current is None or current[0] != number or current[1].done():
                current = (number, asyncio.create_task(self._load(slot.engine, bundle)))
                slot.loading = current
        task = current[1]
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=wait or self._load_wait)
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
        role: str = "active",
        load_wait: float | None = None,
    ) -> EngineResult:
        """`decide` with the revision ``number`` already read by the caller (in the same
        transaction); None: the bundle has no active revision, a deny. ``encoded``: the input
        as `encode_input` wrote it, when the caller has it. ``role``: the engine that holds it
        (``active``, ``canary`` or ``shadow``); ``load_wait``: how long to wait for it to load
        (default: the runtime's bound)."""
        slot = self._slot(role)
        started = time.perf_counter()
        if number is None:
            return fail_closed(
                NO_ACTIVE_POLICY,
                f"bundle {self.bundle} has no active revision",
                slot.engine.name,
                None,
                time.perf_counter() - started,
            )
        problem = await self._ensure_loaded(session, number, slot, load_wait)
        if problem is not None:
            code, detail = problem
            return fail_closed(
                code, detail, slot.engine.name, str(number), time.perf_counter() - started
            )
        return await slot.engine.evaluate(input_doc, encoded=encoded)

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
        slots = {id(slot): slot for slot in self._slots.values()}.values()
        for slot in slots:
            if slot.loading is not None:
                slot.loading[1].cancel()
                with contextlib.suppress(BaseException):
                    await slot.loading[1]
            await slot.engine.aclose()

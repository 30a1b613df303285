"""The cycle collector's tuning (control_plane/kit/collector.py) seen from the process: an app
built to own its process (agentctl serve) tunes it, app after app and two at once, and leaves it
as it found it; an app run in process among other work (an embedding host) leaves it alone."""

from __future__ import annotations

import gc
import weakref

from control_plane.app import create_app
from control_plane.config import Settings
from control_plane.kit.collector import YOUNGEST_THRESHOLD
from tests.conftest import _bootstrap


class _Node:
    def __init__(self) -> None:
        self.itself = self


def _old_garbage() -> weakref.ref[_Node]:
    """A reference cycle in the oldest generation that nothing reaches any more: only a full
    collection frees it (the young collections that start-up triggers do not)."""
    node = _Node()
    gc.collect()  # node survives it, into the oldest generation
    return weakref.ref(node)


async def test_serving_apps_free_garbage_and_leave_the_collector_as_found(
    settings: Settings,
) -> None:
    await _bootstrap(settings)
    host = (900, 11, 12)
    before = gc.get_threshold()
    gc.set_threshold(*host)
    try:
        for _ in range(2):  # app after app: nothing dead is kept alive across starts
            dead = _old_garbage()
            app = create_app(settings, tune_collector=True)
            async with app.router.lifespan_context(app):
                assert dead() is None, "garbage made before the start was frozen, not freed"
                assert gc.get_threshold() == (YOUNGEST_THRESHOLD, 11, 12)
                assert gc.get_freeze_count() > 0
            assert gc.get_threshold() == host
            assert gc.get_freeze_count() == 0

        first = create_app(settings, tune_collector=True)
        second = create_app(settings, tune_collector=True)
        async with first.router.lifespan_context(first):
            async with second.router.lifespan_context(second):
                assert gc.get_threshold() == (YOUNGEST_THRESHOLD, 11, 12)
            # the first app still serves: still tuned, and its start-up objects still frozen
            assert gc.get_threshold() == (YOUNGEST_THRESHOLD, 11, 12)
            assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == host
        assert gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*before)


async def test_an_app_run_in_process_leaves_the_hosts_collector_alone(settings: Settings) -> None:
    await _bootstrap(settings)
    found, frozen = gc.get_threshold(), gc.get_freeze_count()  # the suite's own (conftest.py)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert gc.get_threshold() == found
        assert gc.get_freeze_count() <= frozen  # nothing more frozen
        dead = _old_garbage()
        gc.collect()
        assert dead() is None

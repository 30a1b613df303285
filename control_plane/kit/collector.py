"""The cycle collector's tuning while the app serves a process of its own (``tuned``, entered by
the lifespan of ``create_app(tune_collector=True)``: ``agentctl serve`` and each of its workers).

Why: an audit batch of 1,000 records holds some 30,000 objects until it is answered; they die by
reference count, but with the default threshold (a young collection every 700 allocations) the
collector scans them over and over: a third of ingest's time (bench/audit.py). While an app
serves, the youngest generation is collected every 50,000 allocations instead, and what
start-up built (modules, schemas, engines, the policy) is frozen out of full collections
(``gc.freeze``), so a full collection does not walk it.

Garbage is collected before the freeze (``gc.collect``, once per start). A frozen object is
never collected, and ``gc.unfreeze`` puts it back in the oldest generation without counting it
towards the next full collection, so garbage frozen at each start piles up: in a process that
starts app after app (an embedding host, the test suite) the oldest generation grew by some
50,000 dead objects per start, and the full collection that finally came had millions to free
at once, a pause of seconds (3 s per million objects measured here).

The tuning is process-wide, so only a process that exists to serve takes it: a host that runs
the app in process among other work (an embedding service, the test suite) keeps its collector
as it set it. It is counted: with several tuned apps in one process, the first start tunes and
freezes, the last stop restores the thresholds it found and unfreezes (everything:
``gc.unfreeze`` has no finer grain).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

#: Allocations between two collections of the youngest generation while an app serves.
YOUNGEST_THRESHOLD: Final = 50_000

_lock = threading.Lock()
_serving = 0
_found: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def tuned() -> Iterator[None]:
    """Collect, freeze and raise the youngest threshold on the first entry in the process;
    restore and unfreeze on the last exit. Re-entrant across apps and threads."""
    global _serving, _found
    with _lock:
        if _serving == 0:
            _found = gc.get_threshold()
            gc.collect()
            gc.freeze()
            gc.set_threshold(YOUNGEST_THRESHOLD, *_found[1:])
        _serving += 1
    try:
        yield
    finally:
        with _lock:
            _serving -= 1
            if _serving == 0:
                gc.set_threshold(*_found)
                gc.unfreeze()

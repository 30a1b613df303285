"""The process's shutdown state: set when SIGTERM arrives, read by ``/readyz``.

``agentctl serve`` sets ``draining`` on the first SIGTERM, before it stops accepting
connections, so readiness turns false first and load balancers move traffic elsewhere while the
requests in flight finish.
"""

from __future__ import annotations

import threading

_draining = threading.Event()


def start_draining() -> None:
    _draining.set()


def draining() -> bool:
    return _draining.is_set()

"""The process's shutdown state: set when SIGTERM arrives, read by ``/readyz``.

``install_sigterm_drain`` (called by the app's lifespan under ``agentctl serve``) sets
``draining`` on the first SIGTERM, before the server stops accepting connections, so readiness
turns false first and load balancers move traffic elsewhere while the requests in flight finish.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog

log = structlog.get_logger(__name__)

_draining = threading.Event()


def start_draining() -> None:
    _draining.set()


def draining() -> bool:
    return _draining.is_set()


def install_sigterm_drain(seconds: float) -> None:
    """Put draining in front of the server's own SIGTERM handling: the first SIGTERM turns
    readiness false, and ``seconds`` later the server's handler runs (it stops accepting,
    lets in-flight requests finish within its graceful-shutdown timeout, then runs the
    lifespan's shutdown). A second SIGTERM, or SIGINT, acts at once.

    Only over uvicorn's handler (``Server.handle_exit``, installed before the lifespan starts,
    in the main thread); anywhere else (tests driving the app in process) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous) or getattr(previous, "__name__", "") != "handle_exit":
        return
    server_exit: Callable[[int, FrameType | None], Any] = previous
    loop = asyncio.get_running_loop()

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        # A signal handler interrupts whatever the main thread was doing, a log write that
        # holds its stream's lock included: logging (or starting a thread) from here can
        # deadlock the process. Only flags are set here; the rest runs on the event loop.
        if draining():
            server_exit(sig, frame)
            return
        start_draining()
        loop.call_soon_threadsafe(_log_draining, seconds)
        if seconds <= 0:
            server_exit(sig, frame)
        else:
            # The server's handler only sets flags its main loop polls: safe from a timer.
            loop.call_soon_threadsafe(loop.call_later, seconds, server_exit, sig, None)

    signal.signal(signal.SIGTERM, on_sigterm)


def _log_draining(seconds: float) -> None:
    log.info("shutdown_draining", drain_seconds=seconds)

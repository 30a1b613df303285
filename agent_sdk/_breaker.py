"""A circuit breaker per client (closed -> open -> half-open), no I/O.

After ``threshold`` consecutive failures (no HTTP answer, or a 5xx) the circuit opens: calls
fail fast with ``Unavailable`` for ``cooldown`` seconds. Then exactly one probe call is let
through; its success closes the circuit, its failure opens it for another cool-down. A lock
makes it safe from threads; it never blocks long enough to matter on an event loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from agent_sdk._exceptions import Unavailable


class CircuitBreaker:
    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1 or cooldown < 0:
            raise ValueError("threshold must be >= 1 and cooldown >= 0")
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._probing or self._clock() - self._opened_at >= self.cooldown:
                return "half_open"
            return "open"

    def before_call(self) -> None:
        """Raise ``Unavailable`` if the call must fail fast; otherwise let it through."""
        with self._lock:
            if self._opened_at is None:
                return
            left = self.cooldown - (self._clock() - self._opened_at)
            if left > 0 or self._probing:
                raise Unavailable(max(left, 0.0))
            self._probing = True  # this call is the one probe

    def remaining(self) -> float:
        """Seconds until the next probe may go (0 when closed)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cooldown - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probing = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._probing or self._failures >= self.threshold:
                self._opened_at = self._clock()
                self._probing = False

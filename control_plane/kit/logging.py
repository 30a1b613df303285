"""structlog configuration: key-value lines in development, JSON in production; and the log
lines of a background loop whose rounds keep failing (``FailureStreak``)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog


def configure_logging(level: str = "INFO", *, json_lines: bool = False) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


class FailureStreak:
    """The log lines of a background loop that retries a failing round (the database or NATS
    down): the first failure of a streak at warning (``event``, with ``error_type``), then at
    most one more every ``every`` seconds (with ``failures``, the streak's count so far), and
    ``<event minus _failed>_recovered`` at info (``failures``, ``seconds``) on the first
    success after it. A loop retrying every 0.1 s through a 30 s outage logs 2 lines, not 300.
    Not thread-safe: one loop, one instance."""

    def __init__(
        self,
        logger: Any,
        event: str,
        *,
        every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log, self._event, self._every, self._clock = logger, event, every, clock
        self._failures = 0
        self._started = 0.0
        self._logged = 0.0

    def failed(self, exc: BaseException, **fields: Any) -> None:
        now = self._clock()
        self._failures += 1
        if self._failures == 1:
            self._started = now
        elif now - self._logged < self._every:
            return
        self._logged = now
        self._log.warning(
            self._event, error_type=type(exc).__name__, failures=self._failures, **fields
        )

    def succeeded(self) -> None:
        if self._failures:
            self._log.info(
                self._event.removesuffix("_failed") + "_recovered",
                failures=self._failures,
                seconds=round(self._clock() - self._started, 1),
            )
            self._failures = 0

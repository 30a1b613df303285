"""Local mode's decision logs: a durable outbox of OPA decision-log events and the deliverer
that posts them to ``POST /v1/logs`` (docs/federation.md section 6).

``decide()`` writes each event here (a SQLite WAL commit, the audit outbox's class) before it
answers. The deliverer sends the oldest events in gzip batches and drops an event only once
the server counted it ``accepted``, ``duplicate`` or ``rejected`` (then it is kept aside with
the reason); a 400, 413 or 422 for a batch is narrowed down, halving it, to the event at fault.
A crash or a lost answer sends events again, and the server, keyed by ``decision_id``, records
each once.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from typing import TYPE_CHECKING, Any

from agent_sdk._base_client import RequestOptions, log
from agent_sdk._exceptions import (
    AgentControlPlaneError,
    BadRequestError,
    ContentTooLargeError,
    UnprocessableEntityError,
)
from agent_sdk._outbox import Outbox, Row

if TYPE_CHECKING:
    from agent_sdk._client import Client


def encode_event(
    *,
    decision_id: str,
    path: str,
    input_doc: dict[str, Any],
    result: dict[str, Any],
    timestamp: str | None,
    bundles: dict[str, Any],
    labels: dict[str, str],
    eval_ns: int,
) -> bytes:
    """One OPA decision-log event as JSON bytes (ASCII: a lone surrogate in a claim travels as
    its escape, never as bytes that are not UTF-8)."""
    event = {
        "decision_id": decision_id,
        "path": path,
        "input": input_doc,
        "result": result,
        "timestamp": timestamp,
        "bundles": bundles,
        "labels": labels,
        "metrics": {"timer_rego_query_eval_ns": eval_ns},
    }
    return json.dumps(event, separators=(",", ":")).encode("ascii")


class DecisionLogs:
    """The outbox and its deliverer (``run`` is the body of a background thread)."""

    def __init__(
        self, outbox: Outbox, transport: Client, *, batch_size: int, interval: float
    ) -> None:
        self.outbox = outbox
        self._http = transport
        self._batch_size = batch_size
        self._interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.error: tuple[str, str] | None = None  # (code, message) of the last failure

    def add(self, decision_id: str, event: bytes, timeout: float) -> None:
        """Keep one serialised event; waits up to ``timeout`` s for room (``OutboxFull``)."""
        self.outbox.put([(decision_id, event)], timeout)
        self._wake.set()

    def run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                rows = self.outbox.batch(self._batch_size)
            except AgentControlPlaneError:
                return  # closed
            if not rows:
                self._wake.wait(self._interval)
                self._wake.clear()
                continue
            try:
                self.deliver(rows)
                failures = 0
                self.error = None
            except Exception as exc:  # keep the events; try again later
                failures += 1
                self.error = ("delivery_failed", type(exc).__name__)
                delay = min(8.0, self._interval * 2.0 ** min(failures, 10))
                log.log(
                    30 if failures == 1 else 10,
                    "decision-log delivery failed (%s); %d pending, retry in %.2f s",
                    type(exc).__name__,
                    self.outbox.pending(),
                    delay,
                )
                self._stop.wait(delay)
            self.outbox.checkpoint()  # off the path of decide(), which writes the events

    def deliver(self, rows: list[Row]) -> None:
        """POST one batch to ``/v1/logs``; drop what the server answered for."""
        content = gzip.compress(b"[" + b",".join(r.body for r in rows) + b"]", mtime=0)
        options = RequestOptions(
            "POST",
            "/v1/logs",
            content=content,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        try:
            response = self._http._send(options)
        except (BadRequestError, ContentTooLargeError, UnprocessableEntityError) as exc:
            if len(rows) == 1:
                self.outbox.reject(rows[0].id, f"HTTP {exc.status_code}: {exc.code or exc}")
                log.error("decision log %s refused: %s", rows[0].id, exc)
                return
            half = len(rows) // 2  # halve until each part is delivered or is the event at fault
            self.deliver(rows[:half])
            self.deliver(rows[half:])
            return
        try:
            body = response.json()
        except ValueError:
            body = {}
        rejected = body.get("rejected") if isinstance(body, dict) else None
        refused: dict[str, str] = {}
        for item in rejected if isinstance(rejected, list) else []:
            if isinstance(item, dict) and isinstance(item.get("decision_id"), str):
                refused[item["decision_id"]] = str(item.get("reason", "rejected"))
        for decision_id, reason in refused.items():
            self.outbox.reject(decision_id, reason)
            log.warning("decision log %s rejected by the server: %s", decision_id, reason)
        self.outbox.ack([r.id for r in rows if r.id not in refused])

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event is delivered; False after ``timeout`` seconds."""
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.outbox.pending():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

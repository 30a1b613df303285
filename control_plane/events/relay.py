"""An optional relay of the outbox to NATS JetStream (``AGENTCTL_NATS_URL``), for many consumers.

Every event is published to the stream ``AGENTCTL_EVENTS`` on the subject
``agentctl.events.<type>`` with the event id as ``Nats-Msg-Id``, so JetStream drops a repeat
within its duplicate window (a relay that restarts, or several replicas relaying at once), and
the outbox cursor in the ``Agentctl-Cursor`` header. A relay resumes after the cursor of the
stream's last message, so it needs no state of its own. A failure (NATS down) is logged
(``FailureStreak``: the first, then one line every 30 s) and retried; events wait in the outbox
meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import structlog

from control_plane.events import service
from control_plane.kit.database import Database
from control_plane.kit.logging import FailureStreak

log = structlog.get_logger(__name__)

STREAM = "AGENTCTL_EVENTS"
SUBJECT_PREFIX = "agentctl.events."
_BATCH = 500


class NatsRelay:
    def __init__(self, database: Database, url: str, poll_seconds: float) -> None:
        self._database, self._url, self._poll = database, url, poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._streak = FailureStreak(log, "nats_relay_failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="nats-relay")

    async def _run(self) -> None:
        while True:
            try:
                await self._relay()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS or the database unavailable: retry, never die
                self._streak.failed(exc)
                await asyncio.sleep(max(self._poll, 1.0))

    async def _relay(self) -> None:
        import nats
        from nats.js.errors import NotFoundError

        nc = await nats.connect(self._url, connect_timeout=5, max_reconnect_attempts=3)
        try:
            js = nc.jetstream()
            await js.add_stream(name=STREAM, subjects=[SUBJECT_PREFIX + ">"])
            cursor: tuple[int, int] | None = None
            info = await js.stream_info(STREAM)
            if info.state.last_seq:
                with contextlib.suppress(NotFoundError):
                    last = await js.get_msg(STREAM, seq=info.state.last_seq)
                    cursor = service.parse_cursor((last.headers or {}).get("Agentctl-Cursor"), "")
            while True:
                async with self._database.read_sessionmaker() as session:
                    rows = await service.read(session, None, after=cursor, limit=_BATCH)
                for row in rows:
                    event = service.envelope(row)
                    await js.publish(
                        SUBJECT_PREFIX + row.type,
                        json.dumps(event, separators=(",", ":")).encode(),
                        stream=STREAM,
                        headers={"Nats-Msg-Id": event["id"], "Agentctl-Cursor": event["cursor"]},
                    )
                    cursor = (row.txid, row.seq or 0)
                self._streak.succeeded()
                if len(rows) < _BATCH:
                    await asyncio.sleep(self._poll)
        finally:
            await nc.close()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

"""``AsyncClient``: the asyncio client. Sending, sleeping and a flusher task; the rest is in
``_base_client``. Use it from one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from agent_sdk._auth import PrivateKeyInput
from agent_sdk._base_client import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    AuditInput,
    BaseClient,
    RequestOptions,
    log,
)
from agent_sdk._exceptions import (
    AgentControlPlaneError,
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ContentTooLargeError,
    OutboxFull,
    UnprocessableEntityError,
)
from agent_sdk._governed import AsyncGoverned, ResourceArg
from agent_sdk._models import Decision
from agent_sdk._outbox import Row


class AsyncClient(BaseClient):
    """The asyncio twin of ``Client``: the same arguments (``http_client`` is an
    ``httpx.AsyncClient``; local mode's enforcement point runs on threads, so its
    ``LocalOptions.http_client`` is a sync ``httpx.Client``), the same methods as coroutines,
    ``async with`` for ``close()``.
    The flusher is a task on the loop that first uses the client (records a previous process
    left in the outbox start flowing on the first call, or on ``async with``)."""

    def __init__(
        self,
        base_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        private_key: PrivateKeyInput | None = None,
        *,
        outbox_path: str | os.PathLike[str] | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            base_url,
            client_id,
            client_secret,
            private_key,
            outbox_path=outbox_path,
            timeout=timeout,
            max_retries=max_retries,
            **options,
        )
        self._http = http_client or httpx.AsyncClient()
        self._owns_http = http_client is None
        self._token_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False

    async def __aenter__(self) -> AsyncClient:
        if self.pending():
            self._start_flusher()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- sending ------------------------------------------------------------------------------

    async def _token(self) -> str:
        token = self._tokens.current()
        if token is not None:
            return token
        async with self._token_lock:  # single flight: the others wait and reuse its token
            token = self._tokens.current()
            if token is not None:
                return token
            if self._needs_metadata:
                self._accept_metadata(await self._send(self._metadata_options()))
            log.debug("requesting an access token for client %s", self.client_id)
            response = await self._send(self._token_options())
            return self._tokens.accept(response.json())

    async def _send(self, options: RequestOptions) -> httpx.Response:
        """One logical call: token, circuit breaker, retries; raises the typed errors."""
        options = self._finalise(options)
        if self.pending() and self._flusher is None:
            self._start_flusher()
        refreshed = False
        attempt = 0
        while True:
            token = await self._token() if options.auth else None
            self._breaker.before_call()
            request = self._build_request(self._http, options, token)
            response: httpx.Response | None = None
            try:
                response = await self._http.send(request)
            except httpx.TransportError as exc:
                self._breaker.record_failure()
                error: AgentControlPlaneError = self._transport_error(exc, request)
                why = type(exc).__name__
            else:
                if self._is_outage(response):
                    self._breaker.record_failure()
                else:
                    self._breaker.record_success()
                if response.is_success:
                    return response
                if response.status_code == 401 and options.auth and not refreshed:
                    refreshed = True
                    self._tokens.invalidate(token)
                    log.info(
                        "token refused on %s %s; refreshing once", options.method, options.path
                    )
                    continue
                error = self._status_error(response)
                if not self._should_retry(response):
                    raise error
                why = f"HTTP {response.status_code}"
            if attempt >= self.max_retries:
                raise error
            delay = self._retry_delay(attempt, response)
            self._log_retry(options, attempt, delay, why)
            await asyncio.sleep(delay)
            attempt += 1

    # --- decisions ----------------------------------------------------------------------------

    async def decide(
        self,
        action: str,
        resource: Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
        *,
        approval_id: uuid.UUID | str | None = None,
    ) -> Decision:
        """Ask whether this agent may take ``action`` on ``resource``; see ``Client.decide``
        (``approval_id`` too)."""
        if approval_id is not None:
            options = self._decide_options(action, resource, context, approval_id)
            return self._parse_decision(await self._send(options))
        if self._federation is not None:
            # Evaluation takes well under a millisecond: run inline. Only a full decision-log
            # outbox makes this wait (up to bundle_wait s), and only until the deliverer drains.
            token = await self._local_agent_token()
            return self._federation.decide(
                token, action, resource, context, on_revoked=self._tokens.due
            )
        response = await self._send(self._decide_options(action, resource, context))
        return self._parse_decision(response)

    async def _local_agent_token(self) -> str:
        """See ``Client._fresh_token``: a due refresh runs as a task, the held token serves."""
        token = self._tokens.current()
        if token is not None:
            return token
        if self._tokens.last() is None:
            try:
                return await self._token()
            except AgentControlPlaneError as exc:
                log.warning("no agent token (%s); deciding without one", exc)
                return ""
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(
                self._refresh_quietly(), name="agent_sdk-token"
            )
        return self._local_token(None)

    async def _refresh_quietly(self) -> None:
        try:
            await self._token()
        except Exception as exc:  # the held token serves until it expires
            log.info("agent token refresh failed (%s); the held token serves meanwhile", exc)

    def governed(
        self,
        action: str,
        resource: ResourceArg,
        context: Mapping[str, Any] | None = None,
        *,
        inputs: Mapping[str, Any] | None = None,
        approval_id: uuid.UUID | str | None = None,
    ) -> AsyncGoverned:
        """``async with client.governed(...) as act:`` or ``@client.governed(...)`` on a
        coroutine function; see ``Client.governed``."""
        return AsyncGoverned(self, action, resource, context, inputs, approval_id)

    # --- audit --------------------------------------------------------------------------------

    async def audit(self, record: AuditInput, *, timeout: float | None = None) -> uuid.UUID:
        """Record one audit record; see ``Client.audit``."""
        return (await self.audit_many([record], timeout=timeout))[0]

    async def audit_many(
        self, records: Iterable[AuditInput], *, timeout: float | None = None
    ) -> list[uuid.UUID]:
        """Record several audit records in one outbox transaction; see ``Client.audit_many``."""
        return await self._audit_redacted(records, (), timeout)

    async def _audit_redacted(
        self, records: Iterable[AuditInput], redact: Iterable[str], timeout: float | None = None
    ) -> list[uuid.UUID]:
        rows = self._audit_rows(records, redact)
        if not rows:
            return []
        outbox = self._open_outbox()
        wait = self.audit_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        self._start_flusher()
        while not outbox.try_put(rows):
            if time.monotonic() >= deadline:
                raise OutboxFull(
                    f"the audit outbox stayed full for {wait:.1f} s ({outbox.pending()} pending)"
                )
            self._wake.set()
            await asyncio.sleep(0.01)
        self._wake.set()
        return [uuid.UUID(record_id) for record_id, _ in rows]

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until the outbox (and, in local mode, the decision logs) is empty; True when it
        is, False after ``timeout`` seconds."""
        if self._federation is not None:
            federation = self._federation
            if not await asyncio.to_thread(federation.flush, timeout):
                return False
        if self._outbox is None:
            return True
        self._start_flusher()
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._outbox.pending():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def close(self, timeout: float | None = None) -> None:
        """Drain the outbox for up to ``timeout`` s (default ``audit_timeout``), stop the
        flusher, release connections. Undelivered records stay in the outbox file."""
        if self._closed:
            return
        if self._outbox is not None and self._outbox.pending():
            await self.flush(self.audit_timeout if timeout is None else timeout)
        if self._federation is not None:
            wait = self.audit_timeout if timeout is None else timeout
            await asyncio.to_thread(self._federation.close, wait)
        self._closed = True
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresher
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._outbox is not None:
            self._outbox.close()
        if self._owns_http:
            await self._http.aclose()

    # --- the background flusher ---------------------------------------------------------------

    def _start_flusher(self) -> None:
        if self._flusher is None and not self._closed:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_loop(), name="agent_sdk-flusher"
            )

    async def _flush_loop(self) -> None:
        outbox = self._open_outbox()
        failures = 0
        # `not self._closed`: on Python 3.11, asyncio.wait_for can swallow a cancellation that
        # arrives as the awaited event fires (close() sets it through flush()); the loop must end
        # on its own then, or close() would wait for it forever.
        while not self._closed:
            rows = outbox.batch(self.audit_batch_size)
            if not rows:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval):
                        await self._wake.wait()
                continue
            try:
                await self._deliver(rows)
                failures = 0
            except Exception as exc:  # keep the records; try again later
                failures += 1
                delay = self._flush_delay(failures, exc)
                level = 30 if failures == 1 else 10
                log.log(
                    level,
                    "audit delivery failed (%s); %d pending, retry in %.2f s",
                    type(exc).__name__,
                    outbox.pending(),
                    delay,
                )
                await asyncio.sleep(delay)
            # The log this round wrote, off the event loop (a checkpoint may fsync).
            await asyncio.to_thread(outbox.checkpoint)

    async def _deliver(self, rows: list[Row]) -> None:
        outbox = self._open_outbox()
        try:
            response = await self._send(self._audit_options(rows))
        except (BadRequestError, ContentTooLargeError, UnprocessableEntityError) as exc:
            if len(rows) == 1:  # this record alone is refused: keep it aside, never resend
                outbox.reject(rows[0].id, f"HTTP {exc.status_code}: {exc.code or exc.detail}")
                log.error("audit record %s refused: %s", rows[0].id, exc)
                return
            # A bad record, or a batch over the body limit: halve until each part is
            # delivered or is the one record at fault.
            half = len(rows) // 2
            await self._deliver(rows[:half])
            await self._deliver(rows[half:])
            return
        except AuthenticationError:
            self._tokens.invalidate()
            raise
        except APIConnectionError:
            raise
        outcome = self._audit_outcome(response, rows)
        outbox.ack(outcome.acked)
        for record_id, reason in outcome.rejected:
            outbox.reject(record_id, reason)
            log.error("audit record %s refused: %s", record_id, reason)

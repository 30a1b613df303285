"""``Client``: the synchronous client. Sending, sleeping and a flusher thread; the rest is in
``_base_client``. Safe to share between threads."""

from __future__ import annotations

import os
import threading
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
    UnprocessableEntityError,
)
from agent_sdk._governed import Governed, ResourceArg
from agent_sdk._models import Decision
from agent_sdk._outbox import Row


class Client(BaseClient):
    """A synchronous client for one agent credential.

    Arguments (the first four fall back to ``AGENTCTL_URL``, ``AGENTCTL_CLIENT_ID``,
    ``AGENTCTL_CLIENT_SECRET`` and ``AGENTCTL_PRIVATE_KEY_FILE``):

    - ``base_url``: the control plane, e.g. ``https://cp.example.com``.
    - ``client_id`` and one of ``client_secret`` (client_secret_basic) or ``private_key``
      (private_key_jwt, RFC 7523: Ed25519 or P-256, as PEM, private JWK or a file path).
    - ``outbox_path``: the SQLite outbox for audit records (default under the user's cache dir,
      one file per client id). Bounds: ``outbox_max_records``, ``outbox_max_bytes``; a full
      outbox makes ``audit()`` wait up to ``audit_timeout`` seconds, then raise ``OutboxFull``.
    - ``timeout`` (seconds or ``httpx.Timeout``), ``max_retries`` (per logical call),
      ``retry_after_cap`` (seconds), ``backoff_base``/``backoff_cap`` (seconds).
    - ``breaker_threshold`` consecutive failures open the circuit for ``breaker_cooldown`` s.
    - ``audit_batch_size`` (at most 1,000) records per POST; ``flush_interval`` (s) between
      polls of an empty outbox.
    - ``http_client``: an ``httpx.Client`` to send with (proxies, custom transports, a private
      CA). Local mode's enforcement point sends with its own: ``LocalOptions.http_client``.
    - ``mode``: ``"remote"`` (default: ``decide()`` asks ``POST /v1/decisions``) or ``"local"``
      (``decide()`` evaluates the domain's signed bundle in process as an enforcement point,
      ``local``: a ``LocalOptions``, else from the environment; needs the extra ``local``;
      see ``agent_sdk._federation``). Raises ``AgentControlPlaneError`` naming the extra when
      it is not installed.

    Raises ``AgentControlPlaneError`` when configuration is missing or contradictory. Use it as
    a context manager, or call ``close()``: that drains the outbox (up to ``audit_timeout``).
    """

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
        http_client: httpx.Client | None = None,
        **options: Any,
    ) -> None:
        local = options.get("local")
        if http_client is not None and getattr(local, "http_client", None) is http_client:
            raise AgentControlPlaneError(
                "LocalOptions.http_client must be an httpx.Client of its own, not the Client's "
                "http_client: closing the enforcement point closes it"
            )
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
        self._http = http_client or httpx.Client()
        self._owns_http = http_client is None
        self._token_lock = threading.Lock()
        self._flusher_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._refresher: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        if self.pending():
            self._start_flusher()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- sending ------------------------------------------------------------------------------

    def _token(self) -> str:
        token = self._tokens.current()
        if token is not None:
            return token
        with self._token_lock:  # single flight: the others wait and reuse its token
            token = self._tokens.current()
            if token is not None:
                return token
            if self._needs_metadata:
                self._accept_metadata(self._send(self._metadata_options()))
            log.debug("requesting an access token for client %s", self.client_id)
            response = self._send(self._token_options())
            return self._tokens.accept(response.json())

    def _send(self, options: RequestOptions) -> httpx.Response:
        """One logical call: token, circuit breaker, retries; raises the typed errors."""
        options = self._finalise(options)
        refreshed = False
        attempt = 0
        while True:
            token = self._token() if options.auth else None
            self._breaker.before_call()
            request = self._build_request(self._http, options, token)
            response: httpx.Response | None = None
            try:
                response = self._http.send(request)
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
            time.sleep(delay)
            attempt += 1

    # --- decisions ----------------------------------------------------------------------------

    def decide(
        self,
        action: str,
        resource: Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
        *,
        approval_id: uuid.UUID | str | None = None,
    ) -> Decision:
        """Ask whether this agent may take ``action`` on ``resource``.

        ``resource`` needs ``type`` and ``id`` and may carry any attributes the policy reads;
        ``context`` is free-form (amount, risk, ...). Returns a ``Decision``; a deny or
        require_approval is a normal answer, not an exception. In local mode the decision is
        taken in process (``engine`` ``"sdk"``; ``policy_stale`` past the staleness bound) and
        logged durably for the centre; it raises ``AgentControlPlaneError`` only for a
        malformed request, and ``OutboxFull`` when the decision-log outbox stays full.
        Remotely it raises ``APIStatusError`` subclasses (e.g. ``UnprocessableEntityError``
        for a malformed action, ``PermissionDeniedError`` without the ``decisions:create``
        scope), ``APIConnectionError`` / ``APITimeoutError`` after the retries,
        ``Unavailable`` while the circuit is open.

        ``approval_id``: the approval of an earlier ``require_approval`` (``Decision.approval_id``)
        once a human approved it; the same action then gets ``allow`` once. Approvals are the
        control plane's, so in local mode too this decision is asked of it (remotely).
        """
        if approval_id is not None:
            options = self._decide_options(action, resource, context, approval_id)
            return self._parse_decision(self._send(options))
        if self._federation is not None:
            return self._federation.decide(
                self._fresh_token(), action, resource, context, on_revoked=self._tokens.due
            )
        return self._parse_decision(self._send(self._decide_options(action, resource, context)))

    def _fresh_token(self) -> str:
        """Local mode: the cached token; when a refresh is due and a token is held, the held
        one now and the refresh in the background (a local decision never waits on the
        centre, reachable or not); only the very first token is fetched inline."""
        token = self._tokens.current()
        if token is not None:
            return token
        if self._tokens.last() is None:
            try:
                return self._token()
            except AgentControlPlaneError as exc:
                log.warning("no agent token (%s); deciding without one", exc)
                return ""
        with self._flusher_lock:
            if self._refresher is None or not self._refresher.is_alive():
                self._refresher = threading.Thread(
                    target=self._refresh_quietly, name="agent_sdk-token", daemon=True
                )
                self._refresher.start()
        return self._local_token(None)

    def _refresh_quietly(self) -> None:
        try:
            self._token()
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
    ) -> Governed:
        """Decide, run, record: a context manager (``with``) and a decorator.

        Raises ``Denied`` or ``ApprovalRequired`` (with the decision) before the body runs;
        otherwise yields a ``GovernedAction`` and, when the body ends, records its outcome
        through ``audit()`` linked to the decision, redacted as the decision obliges. See
        ``agent_sdk._governed`` for the details.
        """
        return Governed(self, action, resource, context, inputs, approval_id)

    # --- audit --------------------------------------------------------------------------------

    def audit(self, record: AuditInput, *, timeout: float | None = None) -> uuid.UUID:
        """Record one audit record (an ``AuditRecord`` or a dict of its fields); returns its id.

        The record is written to the durable outbox and sent in the background. Waits up to
        ``timeout`` (default ``audit_timeout``) seconds for room when the outbox is full, then
        raises ``OutboxFull``; an invalid record raises ``AgentControlPlaneError`` at once.
        """
        return self.audit_many([record], timeout=timeout)[0]

    def audit_many(
        self, records: Iterable[AuditInput], *, timeout: float | None = None
    ) -> list[uuid.UUID]:
        """``audit()`` for several records, added to the outbox in one transaction (all or
        none). Returns their ids in order."""
        return self._audit_redacted(records, (), timeout)

    def _audit_redacted(
        self, records: Iterable[AuditInput], redact: Iterable[str], timeout: float | None = None
    ) -> list[uuid.UUID]:
        rows = self._audit_rows(records, redact)
        if not rows:
            return []
        self._open_outbox().put(rows, self.audit_timeout if timeout is None else timeout)
        self._start_flusher()
        self._wake.set()
        return [uuid.UUID(record_id) for record_id, _ in rows]

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every pending record (and, in local mode, decision log) is delivered or
        refused for good; True when the outbox is empty, False when ``timeout`` seconds passed
        first (default: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._federation is not None and not self._federation.flush(timeout):
            return False
        if self._outbox is None:
            return True
        self._start_flusher()
        self._wake.set()
        while self._outbox.pending():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Drain the outbox for up to ``timeout`` seconds (default ``audit_timeout``), stop the
        flusher and release connections. Undelivered records stay in the outbox file and are
        sent by the next client that opens it."""
        if self._closed:
            return
        if self._outbox is not None and self._outbox.pending():
            self.flush(self.audit_timeout if timeout is None else timeout)
        if self._federation is not None:
            self._federation.close(self.audit_timeout if timeout is None else timeout)
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join(timeout=30)
        if self._outbox is not None:
            self._outbox.close()
        if self._owns_http:
            self._http.close()

    # --- the background flusher ---------------------------------------------------------------

    def _start_flusher(self) -> None:
        with self._flusher_lock:
            if self._flusher is None and not self._closed:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="agent_sdk-flusher", daemon=True
                )
                self._flusher.start()

    def _flush_loop(self) -> None:
        outbox = self._open_outbox()
        failures = 0
        while not self._stop.is_set():
            try:
                rows = outbox.batch(self.audit_batch_size)
            except AgentControlPlaneError:
                return  # closed under us
            if not rows:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                continue
            try:
                self._deliver(rows)
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
                self._stop.wait(delay)
            outbox.checkpoint()  # the log this round wrote, off the audit() callers' path

    def _deliver(self, rows: list[Row]) -> None:
        outbox = self._open_outbox()
        try:
            response = self._send(self._audit_options(rows))
        except (BadRequestError, ContentTooLargeError, UnprocessableEntityError) as exc:
            if len(rows) == 1:  # this record alone is refused: keep it aside, never resend
                outbox.reject(rows[0].id, f"HTTP {exc.status_code}: {exc.code or exc.detail}")
                log.error("audit record %s refused: %s", rows[0].id, exc)
                return
            # A bad record, or a batch over the body limit: halve until each part is
            # delivered or is the one record at fault.
            half = len(rows) // 2
            self._deliver(rows[:half])
            self._deliver(rows[half:])
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

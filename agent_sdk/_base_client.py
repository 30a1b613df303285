"""The I/O-free core shared by ``Client`` and ``AsyncClient`` (the layout of openai-python's
``_base_client.py``): configuration with environment fallbacks, building requests, parsing
answers into models and typed errors, retry decisions and backoff, the audit batch contract.
The two clients add only sending, sleeping and their background flusher.

Retry policy (one logical call): connect errors and timeouts, 408, 409 when the server says
the ``Idempotency-Key`` is in use by a request still in flight, 429 and 5xx are retried up to
``max_retries`` times; the wait is the server's ``Retry-After`` (seconds or HTTP date) capped
at ``retry_after_cap``, else full-jitter exponential backoff ``uniform(0, min(cap,
base * 2**attempt))``. Every retry of a POST carries the same ``Idempotency-Key``, so the server
acts once. 400, 403, 404 and 422 are never retried; a 401 refreshes the token once.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from agent_sdk._auth import CLIENT_ASSERTION_TYPE, PrivateKey, PrivateKeyInput, TokenCache
from agent_sdk._breaker import CircuitBreaker
from agent_sdk._exceptions import (
    AgentControlPlaneError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    Unavailable,
    status_error,
)
from agent_sdk._models import AuditRecord, Decision
from agent_sdk._outbox import Outbox, Row
from agent_sdk._redact import redact_record
from agent_sdk._tracing import current_traceparent, trace_id_of
from agent_sdk._version import __version__

if TYPE_CHECKING:
    from agent_sdk._federation import Federation
    from agent_sdk._local_options import LocalOptions

log = logging.getLogger("agent_sdk")
log.addHandler(logging.NullHandler())  # a library: the application decides where logs go

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEFAULT_MAX_RETRIES = 2
AUDIT_PATH = "/v1/audit/records"
MAX_AUDIT_BATCH = 1000

AuditInput = AuditRecord | Mapping[str, Any]


def default_outbox_path(client_id: str) -> Path:
    """``$XDG_CACHE_HOME/agent_sdk/outbox-<client id>.sqlite3`` (``~/.cache`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agent_sdk" / f"outbox-{client_id}.sqlite3"


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """One logical call. ``idempotency_key`` is fixed before the first attempt."""

    method: str
    path: str
    json_body: Any = None
    content: bytes | None = None
    form: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: bool = True
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class AuditOutcome:
    """What a ``POST /v1/audit/records`` answer means for each record sent."""

    acked: list[str]
    rejected: list[tuple[str, str]]
    unanswered: list[str]


class BaseClient:
    """Configuration and everything that needs no I/O. Not used directly."""

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
        retry_after_cap: float = 10.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 10.0,
        outbox_max_records: int = 100_000,
        outbox_max_bytes: int = 256 * 1024 * 1024,
        audit_timeout: float = 10.0,
        audit_batch_size: int = 500,
        flush_interval: float = 0.5,
        mode: Literal["remote", "local"] = "remote",
        local: LocalOptions | None = None,
    ) -> None:
        base_url = base_url or os.environ.get("AGENTCTL_URL")
        client_id = client_id or os.environ.get("AGENTCTL_CLIENT_ID")
        client_secret = client_secret or os.environ.get("AGENTCTL_CLIENT_SECRET")
        if private_key is None and client_secret is None:
            key_file = os.environ.get("AGENTCTL_PRIVATE_KEY_FILE")
            private_key = Path(key_file) if key_file else None
        if not base_url:
            raise AgentControlPlaneError("base_url is required (or set AGENTCTL_URL)")
        if not client_id:
            raise AgentControlPlaneError("client_id is required (or set AGENTCTL_CLIENT_ID)")
        if (client_secret is None) == (private_key is None):
            raise AgentControlPlaneError(
                "give exactly one of client_secret (AGENTCTL_CLIENT_SECRET) and private_key "
                "(AGENTCTL_PRIVATE_KEY_FILE)"
            )
        if max_retries < 0 or not 1 <= audit_batch_size <= MAX_AUDIT_BATCH:
            raise AgentControlPlaneError("max_retries >= 0 and 1 <= audit_batch_size <= 1000")
        parsed = urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise AgentControlPlaneError(
                f"base_url must be an http(s) URL such as https://cp.example.com, not {base_url!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._private_key = PrivateKey(private_key) if private_key is not None else None
        self.timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self.max_retries = max_retries
        self.retry_after_cap = retry_after_cap
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.audit_timeout = audit_timeout
        self.audit_batch_size = audit_batch_size
        self.flush_interval = flush_interval
        self.outbox_path = Path(outbox_path) if outbox_path else default_outbox_path(client_id)
        self._outbox_bounds = (outbox_max_records, outbox_max_bytes)
        self._outbox: Outbox | None = None
        if self.outbox_path.exists():  # records a previous process left: deliver them
            self._open_outbox()
        self._tokens = TokenCache()
        self._token_audience: str | None = None
        self._breaker = CircuitBreaker(breaker_threshold, breaker_cooldown)
        if mode not in ("remote", "local"):
            raise AgentControlPlaneError("mode is 'remote' or 'local'")
        self.mode = mode
        self._federation: Federation | None = None
        if mode == "local":
            from agent_sdk._federation import start_federation

            self._federation = start_federation(self, local)
            # The agent's token outlives a restart in the point's cache directory, so a process
            # started while the centre is out of reach decides with it (the bundle's keys and
            # the token's exp still judge it).
            self._tokens.keep_on_disk(
                self._federation.cache_dir / f"agent-token-{self.client_id}.json", self.base_url
            )

    def _local_token(self, token: str | None) -> str:
        """The agent token to decide with locally: the fresh one, else (the centre is out of
        reach) the last one while it lasts; the bundle's keys judge it either way."""
        return token if token is not None else (self._tokens.last() or "")

    def pending_decision_logs(self) -> int:
        """Local mode: decision-log events waiting for delivery (0 in remote mode)."""
        return self._federation.pending() if self._federation is not None else 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, client_id={self.client_id!r})"

    # --- the outbox ---------------------------------------------------------------------------

    def _open_outbox(self) -> Outbox:
        if self._outbox is None:
            records, size = self._outbox_bounds
            self._outbox = Outbox(
                self.outbox_path, client_id=self.client_id, max_records=records, max_bytes=size
            )
        return self._outbox

    def pending(self) -> int:
        """How many audit records wait in the outbox for delivery."""
        return self._outbox.pending() if self._outbox is not None else 0

    def rejected(self) -> list[tuple[str, str]]:
        """``(record id, reason)`` of records the server refused for good (kept, not sent)."""
        return self._outbox.rejected() if self._outbox is not None else []

    def _audit_rows(
        self, records: Iterable[AuditInput], redact: Iterable[str] = ()
    ) -> list[tuple[str, bytes]]:
        """Validate records and serialise them for the outbox; adds the active traceparent."""
        fields = list(redact)
        traceparent = current_traceparent()
        rows = []
        for record in records:
            try:
                model = (
                    record
                    if isinstance(record, AuditRecord)
                    else AuditRecord.model_validate(record)
                )
            except ValidationError as exc:
                raise AgentControlPlaneError(f"invalid audit record: {exc}") from None
            if model.traceparent is None and traceparent is not None:
                model = model.model_copy(
                    update={"traceparent": traceparent, "trace_id": trace_id_of(traceparent)}
                )
            wire = model.wire()
            if fields:
                wire = redact_record(wire, fields)
            body = json.dumps(wire, separators=(",", ":"), ensure_ascii=False).encode()
            rows.append((str(model.id), body))
        return rows

    def _audit_options(self, rows: list[Row]) -> RequestOptions:
        content = b'{"records":[' + b",".join(r.body for r in rows) + b"]}"
        return RequestOptions(
            "POST", AUDIT_PATH, content=content, headers={"Content-Type": "application/json"}
        )

    @staticmethod
    def _audit_outcome(response: httpx.Response, rows: list[Row]) -> AuditOutcome:
        """Per-record statuses: ``stored``/``duplicate`` are acknowledged, ``conflict`` is
        refused for good, a record the answer does not mention stays pending."""
        try:
            body = response.json()
        except ValueError:
            body = None
        items: Any = None
        if isinstance(body, dict):
            for key in ("records", "results", "data"):
                if isinstance(body.get(key), list):
                    items = body[key]
                    break
        elif isinstance(body, list):
            items = body
        status: dict[str, str] = {}
        for item in items or []:
            if isinstance(item, dict) and isinstance(item.get("status"), str):
                status[str(item.get("id"))] = item["status"]
        acked, rejected, unanswered = [], [], []
        for row in rows:
            verdict = status.get(row.id)
            if verdict in ("stored", "duplicate"):
                acked.append(row.id)
            elif verdict is not None:
                rejected.append((row.id, verdict))
            else:
                unanswered.append(row.id)
        return AuditOutcome(acked, rejected, unanswered)

    def _flush_delay(self, failures: int, error: BaseException) -> float:
        """How long the flusher waits after ``failures`` failed deliveries in a row."""
        if isinstance(error, Unavailable):
            return max(0.05, min(error.retry_after, self.backoff_cap))
        return min(self.backoff_cap, self.flush_interval * 2.0 ** min(failures, 10))

    # --- requests -----------------------------------------------------------------------------

    def _decide_options(
        self,
        action: str,
        resource: Mapping[str, Any],
        context: Mapping[str, Any] | None,
        approval_id: uuid.UUID | str | None = None,
    ) -> RequestOptions:
        body: dict[str, Any] = {"action": action, "resource": dict(resource)}
        if context:
            body["context"] = dict(context)
        if approval_id is not None:
            body["approval_id"] = str(approval_id)
        return RequestOptions("POST", "/v1/decisions", json_body=body)

    def _token_options(self) -> RequestOptions:
        form = {"grant_type": "client_credentials"}
        headers: dict[str, str] = {}
        if self._private_key is not None:
            audience = self._token_audience or f"{self.base_url}/oauth/token"
            form.update(
                client_id=self.client_id,
                client_assertion_type=CLIENT_ASSERTION_TYPE,
                client_assertion=self._private_key.client_assertion(self.client_id, audience),
            )
        else:
            assert self._client_secret is not None
            basic = httpx.BasicAuth(self.client_id, self._client_secret)
            headers["Authorization"] = basic._auth_header
        return RequestOptions(
            "POST", "/oauth/token", form=form, headers=headers, auth=False, idempotency_key=""
        )

    @staticmethod
    def _metadata_options() -> RequestOptions:
        return RequestOptions("GET", "/.well-known/oauth-authorization-server", auth=False)

    def _accept_metadata(self, response: httpx.Response) -> None:
        endpoint = response.json().get("token_endpoint") if response.is_success else None
        self._token_audience = endpoint if isinstance(endpoint, str) else None

    @property
    def _needs_metadata(self) -> bool:
        return self._private_key is not None and self._token_audience is None

    @staticmethod
    def _finalise(options: RequestOptions) -> RequestOptions:
        """Fix the Idempotency-Key of a POST before its first attempt (once per logical call);
        an empty key means the call needs none (the token request is safe to repeat)."""
        if options.method == "POST" and options.idempotency_key is None:
            return replace(options, idempotency_key=str(uuid.uuid4()))
        return options

    def _build_request(
        self, http: httpx.Client | httpx.AsyncClient, options: RequestOptions, token: str | None
    ) -> httpx.Request:
        headers = {"User-Agent": f"agent-sdk-python/{__version__}", **options.headers}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if options.idempotency_key:
            headers["Idempotency-Key"] = options.idempotency_key
        traceparent = current_traceparent()
        if traceparent is not None:
            headers["traceparent"] = traceparent
        return http.build_request(
            options.method,
            self.base_url + options.path,
            json=options.json_body,
            content=options.content,
            data=options.form,
            headers=headers,
            timeout=self.timeout,
        )

    # --- answers and retries ------------------------------------------------------------------

    @staticmethod
    def _should_retry(response: httpx.Response) -> bool:
        status = response.status_code
        if status in (408, 429) or status >= 500:
            return True
        if status == 409:
            try:
                body = response.json()
            except ValueError:
                return False
            return isinstance(body, dict) and body.get("code") == "idempotency_key_in_use"
        return False

    def _retry_delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if response is not None:
            after = _retry_after_seconds(response.headers.get("retry-after"))
            if after is not None:
                return min(max(after, 0.0), self.retry_after_cap)
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))  # noqa: S311

    @staticmethod
    def _is_outage(response: httpx.Response | None) -> bool:
        """Does this outcome count toward opening the circuit?"""
        return response is None or response.status_code >= 500

    @staticmethod
    def _transport_error(exc: httpx.TransportError, request: httpx.Request) -> APIConnectionError:
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(request)
        return APIConnectionError(f"Connection error: {type(exc).__name__}", request=request)

    @staticmethod
    def _status_error(response: httpx.Response) -> APIStatusError:
        return status_error(response)

    @staticmethod
    def _log_retry(options: RequestOptions, attempt: int, delay: float, why: str) -> None:
        log.info(
            "retrying %s %s in %.2f s (retry %d, %s)",
            options.method,
            options.path,
            delay,
            attempt + 1,
            why,
        )

    @staticmethod
    def _parse_decision(response: httpx.Response) -> Decision:
        try:
            return Decision.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise AgentControlPlaneError(f"malformed decision answer: {exc}") from None


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.timestamp() - time.time()

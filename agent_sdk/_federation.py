"""Local mode's enforcement point: pulls the domain bundle, decides, logs, reports.

One `Federation` per local-mode client. Its background threads (the same for the sync and the
async client, so pulling goes on whatever the application's event loop is doing) act as the
enforcement point, with the point's own OAuth2 client credential (scopes ``bundles:read
logs:write status:write``; docs/federation.md):

- pulls ``GET /v1/bundles/{domain}`` with ``If-None-Match`` (304: nothing new) and, when
  ``long_poll`` is set, OPA's long polling (``Prefer: wait=N``: the server answers when the
  revision changes); a bundle is used only after `verify_bundle` accepts it, and kept on disk as
  the last good one (`BundleStore`), which the next process loads before its first pull;
- logs every decision durably before answering and delivers the logs (`_decision_logs`);
- reports status (``POST /v1/status``, OPA's shape) every ``status_interval`` seconds and
  after each bundle change or error.

Staleness: a pull succeeds when the server answers 200 with a bundle that verifies, or 304.
Past the bound without one (``federation.max_staleness_seconds`` from the bundle, shortened by
a local ``max_staleness_seconds``, never lengthened), every decision is a deny with reason
``policy_stale``. The time of the last success is kept on disk, so a restart does not reset it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx

from agent_sdk._base_client import BaseClient, RequestOptions, log
from agent_sdk._bundle import (
    ENTRYPOINT,
    Bundle,
    BundleError,
    require_local_extra,
    verify_bundle,
)
from agent_sdk._bundle_store import BundleStore
from agent_sdk._decision_logs import DecisionLogs, encode_event
from agent_sdk._exceptions import (
    AgentControlPlaneError,
    APIStatusError,
)
from agent_sdk._local_options import LocalOptions, local_options_from_env
from agent_sdk._models import Decision
from agent_sdk._outbox import Outbox
from agent_sdk._version import __version__

if TYPE_CHECKING:
    from agent_sdk._client import Client
    from agent_sdk._local import LocalPolicy

DEFAULT_MAX_STALENESS_SECONDS: Final = 300.0
BUNDLE_NAME: Final = "federation"
_BUNDLE_MEDIA_TYPE: Final = "application/vnd.openpolicyagent.bundles"


@dataclass
class _State:
    """What the status report says (written by the background thread)."""

    last_request: float | None = None
    last_download: float | None = None
    last_activation: float | None = None
    bundle_error: tuple[str, str] | None = None
    changed: bool = True


def _rfc3339(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


class Federation:
    """The local enforcement point behind ``Client(mode="local")`` (see the module doc).

    ``transport`` is a remote-mode ``Client`` holding the point's credential: its token cache,
    retries and circuit breaker serve the pulls and deliveries. ``decide`` is thread-safe.
    """

    def __init__(self, options: LocalOptions, transport: Client, cache_dir: Path) -> None:
        require_local_extra()  # fail at construction, naming the extra, not at the first decision
        if not options.bundle_keys:
            raise AgentControlPlaneError("local mode needs at least one bundle verification key")
        if not 0 <= options.long_poll <= 60 or options.poll_interval <= 0:
            raise AgentControlPlaneError("0 <= long_poll <= 60 and poll_interval > 0")
        if not 0 < options.eval_timeout <= 3600:
            raise AgentControlPlaneError("0 < eval_timeout <= 3600 (seconds)")
        self.options = options
        self.cache_dir = cache_dir
        self.keys = {k.key_id: k for k in options.bundle_keys}
        self._http = transport
        self.store = BundleStore(cache_dir / "bundle")
        self.logs = DecisionLogs(
            Outbox(
                cache_dir / "decision-logs.sqlite3",
                client_id=options.client_id,
                max_records=options.outbox_max_records,
                max_bytes=options.outbox_max_bytes,
            ),
            transport,
            batch_size=options.log_batch_size,
            interval=options.log_interval,
        )
        self._policy: LocalPolicy | None = None
        self._raw: bytes | None = None
        self._etag: str | None = None
        self._success_mono: float | None = None
        self._held_open = False
        self._last_status = 0
        self._last_pull_ok = False
        self._asked_wait = 0
        self._restarting = False
        self._state = _State()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._load_stored()
        self._threads = [
            threading.Thread(target=self._pull_loop, name="agent_sdk-bundle", daemon=True),
            threading.Thread(target=self.logs.run, name="agent_sdk-decision-logs", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # --- bundles ------------------------------------------------------------------------------

    def _load_stored(self) -> None:
        stored = self.store.load()
        if stored is None:
            return
        pulled: float | None = None  # on the monotonic clock, as old as the stored pull
        if stored.pulled_at > 0:
            pulled = time.monotonic() - max(0.0, time.time() - stored.pulled_at)
        try:
            bundle = verify_bundle(stored.raw, self.keys, scope=self.options.bundle_scope)
            self._activate(bundle, pulled)
        except BundleError as exc:
            log.warning("the bundle kept on disk is refused (%s); pulling afresh", exc.reason)
            return
        self._raw, self._etag = stored.raw, stored.etag
        self._state.last_download = stored.pulled_at or None

    def _activate(self, bundle: Bundle, pulled: float | None) -> None:
        """Decide on ``bundle`` from now on; ``pulled`` (monotonic; None: age unknown) is set
        first, as ``decide`` reads policy then clock without the lock (else: policy_stale)."""
        from agent_sdk._local import LocalPolicy  # joserfc, opa-py-wasm: local mode only

        policy = LocalPolicy(bundle, reuse=self._policy, eval_timeout=self.options.eval_timeout)
        with self._lock:
            if self._stop.is_set():  # closed meanwhile (``close``): never used, released now
                policy.close()
                return
            if pulled is not None:
                self._success_mono = pulled
            previous, self._policy = self._policy, policy
        self._ready.set()
        self._state.last_activation = time.time()
        self._state.changed = True
        if previous is not None:
            previous.close()
        log.info("bundle revision %s active", bundle.revision)

    @property
    def revision(self) -> str | None:
        """The revision of the bundle deciding now (None before the first one)."""
        policy = self._policy
        return policy.revision if policy is not None else None

    def max_staleness(self) -> float:
        """The bound in force: the bundle's, shortened by the local setting."""
        policy = self._policy
        bound = policy.max_staleness if policy is not None else None
        local = self.options.max_staleness_seconds
        if bound is None:
            bound = DEFAULT_MAX_STALENESS_SECONDS if local is None else local
        return bound if local is None else min(bound, local)

    def staleness(self) -> float | None:
        """Seconds since the last successful pull (None: never)."""
        success = self._success_mono
        return None if success is None else time.monotonic() - success

    def _long_poll_seconds(self) -> int:
        """How long the next pull may wait at the server for a change. None for the first pull,
        after a failed one and once past half the staleness bound: its answer (a 304 at once)
        is what restarts the staleness clock, so a point that was stale decides again as soon
        as the centre answers. Otherwise ``long_poll``, at most a third of the bound: an
        unchanged bundle is answered 304 well before decisions would go stale."""
        self._restarting = False
        if not self.options.long_poll:
            return 0
        bound = self.max_staleness()
        staleness = self.staleness()
        if not self._last_pull_ok or staleness is None or staleness > bound / 2:
            self._restarting = True  # then, once answered, long polling starts at once
            return 0
        return min(self.options.long_poll, int(bound / 3))  # 0 for a bound under 3 s

    def pull_once(self) -> bool:
        """One pull (blocking, with long polling when configured: ``_long_poll_seconds``);
        True when it succeeded."""
        ok = False
        try:
            ok = self._pull()
        finally:
            self._last_pull_ok = ok
        return ok

    def _pull(self) -> bool:
        headers = {"Accept": f"application/gzip, {_BUNDLE_MEDIA_TYPE}"}
        self._asked_wait = self._long_poll_seconds()
        if self._asked_wait:
            headers["Prefer"] = f"wait={self._asked_wait}"
        if self._etag and self._policy is not None:
            headers["If-None-Match"] = self._etag
        options = RequestOptions("GET", f"/v1/bundles/{self.options.domain}", headers=headers)
        self._state.last_request = time.time()
        self._held_open = False
        try:
            response = self._http._send(options)
        except APIStatusError as exc:
            if self._stop.is_set():  # answered after close: nothing more to do
                return False
            self._last_status = exc.status_code
            if exc.status_code == 304:
                self._pulled(None, exc.response)
                return True
            self._bundle_failed(f"http_{exc.status_code}", str(exc))
            return False
        except AgentControlPlaneError as exc:
            if self._stop.is_set():  # the transport closed under a held pull: not a failure
                return False
            self._bundle_failed("unreachable", f"{type(exc).__name__}: {exc}")
            return False
        if self._stop.is_set():
            return False
        self._last_status = response.status_code
        raw = response.content
        try:
            bundle = verify_bundle(raw, self.keys, scope=self.options.bundle_scope)
            if bundle.revision != self.revision or raw != self._raw:
                self._activate(bundle, time.monotonic())
        except BundleError as exc:
            self._bundle_failed(exc.reason, str(exc))
            log.error("bundle refused, keeping revision %s: %s", self.revision, exc)
            return False
        except AgentControlPlaneError as exc:  # pragma: no cover - wasm missing after start
            self._bundle_failed("load_failed", str(exc))
            return False
        self._raw = raw
        self._pulled(raw, response)
        return True

    def _pulled(self, raw: bytes | None, response: httpx.Response) -> None:
        # The server speaks long polling (OPA's bundle service API), or this pull did not ask
        # it to wait (to restart the staleness clock): ask again at once.
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        self._held_open = bool(self._asked_wait or self._restarting) and (
            media_type == _BUNDLE_MEDIA_TYPE or self._restarting
        )
        etag = response.headers.get("etag")
        if etag:
            self._etag = etag
        now = time.time()
        self._success_mono = time.monotonic()
        self._state.last_download = now
        if self._state.bundle_error is not None:
            self._state.bundle_error, self._state.changed = None, True
        if self._raw is not None:
            try:
                if raw is not None:
                    self.store.save(self._raw, self._etag, now)
                else:
                    self.store.touch(self._raw, self._etag, now)
            except OSError as exc:
                log.warning("cannot keep the bundle on disk: %s", exc)

    def _bundle_failed(self, code: str, message: str) -> None:
        if self._state.bundle_error != (code, message):
            # Logged once per new error (a wrong secret or domain, the centre out of reach),
            # not once per retry; the point's status reports it to the centre too.
            log.warning(
                "bundle pull for domain %s failed (%s): %s; deciding on %s",
                self.options.domain,
                code,
                message,
                f"revision {self.revision}" if self.revision else "no bundle yet (deny)",
            )
            self._state.bundle_error, self._state.changed = (code, message), True

    def _pull_loop(self) -> None:
        last_status = 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                ok = self.pull_once()
            except Exception as exc:  # the transport closed under us, or a bug: keep pulling
                if self._stop.is_set():
                    return
                self._bundle_failed("pull_failed", f"{type(exc).__name__}: {exc}")
                log.exception("bundle pull failed")
                ok = False
            if self._stop.is_set():
                return
            now = time.monotonic()
            due = self._state.changed or now - last_status >= self.options.status_interval
            if due and self.report_status():
                last_status = now
            quick_304 = (
                self._last_status == 304
                and time.monotonic() - started < 0.1
                and self._asked_wait > 0  # a server that does not hold the request open
            )
            if ok and self._held_open and not quick_304:
                continue  # long polling: the next request waits at the server for a change
            self._stop.wait(self.options.poll_interval)

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a first verified bundle; True when one is active."""
        return self._ready.wait(timeout)

    # --- deciding -----------------------------------------------------------------------------

    def decide(
        self,
        token: str,
        action: str,
        resource: Mapping[str, Any],
        context: Mapping[str, Any] | None,
        on_revoked: Callable[[str], None] | None = None,
    ) -> Decision:
        """Decide locally and log the decision (durably) before answering. ``on_revoked`` is
        called with ``token`` when the bundle lists it (or its credential) as revoked: the
        decision is a deny, and the caller can fetch a new token for the next one."""
        if self._policy is None:
            self._ready.wait(self.options.bundle_wait)
        policy = self._policy
        decision_id = uuid.uuid4()
        now = time.time()
        staleness = self.staleness()
        revision = policy.policy_revision if policy else None
        served_by: str | None = None
        if policy is None:
            document = _deny("engine_not_loaded: no verified bundle yet")
            input_doc: dict[str, Any] = {"action": action, "resource": dict(resource)}
            eval_ns = 0
        elif staleness is None or staleness > self.max_staleness():
            document = _deny("policy_stale")
            input_doc = {"action": action, "resource": dict(resource)}
            eval_ns = 0
        else:
            verdict = policy.decide(token, action, resource, context, now)
            document, input_doc, eval_ns = verdict.document, verdict.input, verdict.eval_ns
            revision, served_by = verdict.revision, verdict.served_by
            if verdict.token_refused:
                from agent_sdk._identity import REVOKED  # loaded with the policy: local mode

                log.info("agent token refused locally: %s", verdict.token_refused)
                if verdict.token_refused == REVOKED and on_revoked is not None:
                    on_revoked(token)
        body = encode_event(
            decision_id=str(decision_id),
            path=ENTRYPOINT,
            input_doc={
                "token": token,
                "action": action,
                "resource": input_doc.get("resource", dict(resource)),
                "context": input_doc.get("context", dict(context or {})),
            },
            result=document,
            timestamp=_rfc3339(now),
            bundles={BUNDLE_NAME: {"revision": policy.revision if policy else ""}},
            labels=self._labels(),
            eval_ns=eval_ns,
        )
        self.logs.add(str(decision_id), body, self.options.bundle_wait)
        return Decision(
            decision_id=decision_id,
            effect=document["effect"],
            allow=document["allow"],
            reasons=document["reasons"],
            obligations=document["obligations"],
            bundle=policy.policy_bundle if policy else None,
            revision=revision,
            engine="sdk",
            served_by=served_by,
        )

    def _labels(self) -> dict[str, str]:
        return {
            "id": self.options.client_id,
            "kind": "sdk",
            "domain": self.options.domain,
            "version": __version__,
            **self.options.labels,
        }

    def pending(self) -> int:
        """Decision-log events waiting for delivery."""
        return self.logs.outbox.pending()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every decision log is delivered; False after ``timeout`` seconds."""
        return self.logs.flush(timeout)

    # --- status -------------------------------------------------------------------------------

    def status_report(self) -> dict[str, Any]:
        """OPA's status report, the subset the centre reads (docs/federation.md section 7)."""
        state = self._state
        bundle: dict[str, Any] = {
            "name": BUNDLE_NAME,
            "active_revision": self.revision or "",
            "last_request": _rfc3339(state.last_request),
            "last_successful_request": _rfc3339(state.last_download),
            "last_successful_download": _rfc3339(state.last_download),
            "last_successful_activation": _rfc3339(state.last_activation),
        }
        if state.bundle_error is not None:
            bundle.update(code=state.bundle_error[0], message=state.bundle_error[1])
        report: dict[str, Any] = {
            "labels": self._labels(),
            "bundles": {BUNDLE_NAME: bundle},
            "decision_logs": {"pending": self.logs.outbox.pending()},
            "plugins": {"bundle": {"state": "OK" if self._policy else "NOT_READY"}},
        }
        if self.logs.error is not None:
            report["decision_logs"].update(code=self.logs.error[0], message=self.logs.error[1])
        return report

    def report_status(self) -> bool:
        self._state.changed = False
        options = RequestOptions("POST", "/v1/status", json_body=self.status_report())
        try:
            self._http._send(options)
        except Exception as exc:  # an error answer, no answer, or the transport closed
            log.debug("status report failed: %s", exc)
            self._state.changed = True
            return False
        return True

    def close(self, timeout: float) -> None:
        """Deliver pending logs for up to ``timeout`` s, then stop (they stay on disk) and
        close the transport. A pull held open by long polling is not waited for: closing the
        transport does not interrupt a blocked read, and the pull thread (a daemon) ends when
        the server answers, doing nothing more once stopped."""
        if self.logs.outbox.pending():
            self.flush(timeout)
        self._stop.set()
        self.logs.stop()
        pull, logs = self._threads
        logs.join(timeout=30)
        self._http.close(timeout=0)
        pull.join(timeout=0.2)
        self.logs.outbox.close()
        with self._lock:  # an activation finishing now sees the stop and releases its own
            policy, self._policy = self._policy, None
        if policy is not None:
            policy.close()


def _deny(reason: str) -> dict[str, Any]:
    return {"effect": "deny", "allow": False, "reasons": [reason], "obligations": []}


def start_federation(client: BaseClient, local: LocalOptions | None) -> Federation:
    """Local mode's enforcement point for ``client``, with a remote-mode sync ``Client`` of the
    point's own credential as transport (its bundle pulls may be held open ``long_poll`` s),
    sending with ``LocalOptions.http_client`` when given; closing the point closes it."""
    from agent_sdk._client import Client

    options = local if local is not None else local_options_from_env()
    cache_dir = (
        Path(options.cache_dir)
        if options.cache_dir is not None
        else client.outbox_path.parent / f"local-{options.client_id}"
    )
    read = (client.timeout.read or 10.0) + options.long_poll
    transport = Client(
        client.base_url,
        options.client_id,
        options.client_secret,
        outbox_path=cache_dir / "unused-audit-outbox.sqlite3",
        timeout=httpx.Timeout(read, connect=client.timeout.connect),
        max_retries=client.max_retries,
        http_client=options.http_client,
    )
    transport._owns_http = True  # LocalOptions.http_client is the point's: closed with it
    try:
        return Federation(options, transport, cache_dir)
    except BaseException:
        transport.close()
        raise

"""The application factory. ``create_app`` wires routers (``api.py``), error handlers and
middleware; the lifespan builds the typed ``AppState`` (database, key store, policy runtime,
background tasks) and stops it again. Nothing heavy happens at import time."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from opentelemetry.sdk.trace import TracerProvider

from control_plane import __version__
from control_plane.api import build_api
from control_plane.audit.service import AuditContext
from control_plane.audit.trees import LogTrees
from control_plane.audit.worker import AuditWorker
from control_plane.config import Settings, get_settings
from control_plane.console.web import STATIC_DIR as CONSOLE_STATIC
from control_plane.crypto import resolve_kek
from control_plane.crypto.keystore import KeyStore
from control_plane.events.relay import NatsRelay
from control_plane.events.webhooks import WebhookDispatcher
from control_plane.federation.service import BundleCache
from control_plane.federation.service import start as start_federation
from control_plane.impact.jobs import ImpactJobs
from control_plane.kit import collector, dberrors, lifecycle
from control_plane.kit.database import Database
from control_plane.kit.egress import Resolver, system_resolver
from control_plane.kit.errors import error_responses, install_error_handlers
from control_plane.kit.http_methods import MethodMiddleware
from control_plane.kit.middleware import (
    BodyLimitMiddleware,
    RequestIdMiddleware,
    UrlSanityMiddleware,
)
from control_plane.kit.openapi_doc import finalize
from control_plane.kit.redaction import redaction_key
from control_plane.migrate import head_revision
from control_plane.oauth2.agent_auth import AgentAuthenticator
from control_plane.oauth2.pruning import Pruner
from control_plane.observability import metrics, tracing
from control_plane.observability.middleware import MetricsPortMiddleware, ObservabilityMiddleware
from control_plane.policy.engines import InputLimits, build_engine
from control_plane.policy.runtime import PolicyRuntime
from control_plane.policy.shadow import ShadowEvaluator
from control_plane.state import AppState

DESCRIPTION = (
    "Registers agents and their versions, issues their credentials, decides on their actions "
    "with OPA policy and keeps the audit trail. Errors are RFC 9457 problem+json."
)


log = structlog.get_logger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    resolver: Resolver = system_resolver,
    tune_collector: bool = False,
) -> FastAPI:
    """The application. ``tracer_provider``: where its spans go (default: one exporting over
    OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, see ``observability.tracing``).
    ``resolver``: how webhook hosts resolve for the SSRF check and the connection
    (``kit.egress``; the operating system's by default, tests pass their own).
    ``tune_collector``: the process is the app's own (``agentctl serve`` and its workers), so
    while it serves the cycle collector is tuned for it (``kit.collector``). Off by default: a
    process that runs the app among other work keeps its collector as it set it."""
    settings = settings or get_settings()
    provider = tracer_provider or tracing.build_provider()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database.open(settings)
        tracing.instrument_engine(database.engine, provider)
        keystore = KeyStore(database, settings)
        await keystore.start()
        limits = InputLimits()
        policy_engine = build_engine(
            settings.policy_engine,
            opa_url=settings.opa_url,
            load_timeout=settings.opa_load_timeout_seconds,
            timeout=settings.policy_timeout_seconds,
            threads=settings.policy_threads,
            limits=limits,
        )
        policy_runtime = PolicyRuntime(
            policy_engine,
            settings.policy_bundle,
            load_wait=settings.policy_load_wait_seconds,
            # The canary and shadow revisions run in engines of their own: in process (the
            # module OPA compiled for the revision) whatever the main engine, since one OPA
            # server holds one data document.
            engine_factory=lambda: build_engine(
                "wasm",
                timeout=settings.policy_timeout_seconds,
                threads=settings.policy_threads,
                limits=limits,
            ),
        )
        kek = resolve_kek(settings)
        audit_context = AuditContext.from_issuer(redaction_key(kek), settings.issuer_url)
        audit_trees = LogTrees()
        state = AppState(
            settings=settings,
            database=database,
            migration_head=head_revision(),
            keystore=keystore,
            agent_authenticator=AgentAuthenticator(keystore, settings),
            input_limits=limits,
            policy_runtime=policy_runtime,
            pruner=Pruner(
                database,
                settings.prune_interval_seconds,
                failure_window=settings.auth_failure_window_seconds,
            ),
            kek=kek,
            redaction_key=audit_context.redaction_key,
            audit_context=audit_context,
            audit_trees=audit_trees,
            audit_worker=AuditWorker(
                database.sessionmaker,
                audit_context,
                audit_trees,
                kek,
                interval=settings.audit_sequencer_interval_seconds,
                checkpoint_seconds=settings.audit_checkpoint_seconds,
                writer_lock=database.writer_turn,
            ),
            bundle_cache=BundleCache(),
            webhook_dispatcher=WebhookDispatcher(database, settings, kek, resolver),
            impact_jobs=ImpactJobs(),
            shadow_evaluator=ShadowEvaluator(database, policy_runtime),
        )
        app.state.context = state
        await _load_active_policy(state)
        await start_federation(state)
        lifecycle.install_sigterm_drain(settings.shutdown_drain_seconds)
        state.pruner.start()
        state.audit_worker.start()
        state.webhook_dispatcher.start()
        state.shadow_evaluator.start()
        relay = (
            NatsRelay(database, settings.nats_url, settings.events_poll_seconds)
            if settings.nats_url
            else None
        )
        if relay is not None:
            relay.start()
        try:
            with collector.tuned() if tune_collector else nullcontext():
                yield
        finally:
            if relay is not None:
                await relay.aclose()
            await state.webhook_dispatcher.aclose()
            await state.impact_jobs.aclose()
            await state.shadow_evaluator.aclose()
            await state.audit_worker.stop()
            await _flush_audit(state)
            await state.pruner.aclose()
            await state.policy_runtime.aclose()
            await state.keystore.aclose()
            await database.aclose()
            if tracer_provider is None:
                provider.shutdown()  # flushes the batch exporter
            metrics.process_exited()

    app = FastAPI(
        title="agent-control-plane",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Any route may meet a malformed request (NUL in the URL, a body that is not UTF-8, a
        # malformed Idempotency-Key), an oversized body or an unavailable database.
        responses=error_responses(400, 413, 503),
        # No redirect built from the request's Host header (a trailing slash is a 404).
        redirect_slashes=False,
    )
    install_error_handlers(app)
    dberrors.install(app)
    app.include_router(build_api())
    # The web console's script and style sheet (its pages are routes of control_plane.console).
    app.mount("/console/static", StaticFiles(directory=CONSOLE_STATIC), name="console-static")
    app.add_middleware(MethodMiddleware, openapi=lambda: app.openapi())
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(UrlSanityMiddleware)
    # Inside the request id (its log line carries it), outside the rest (it sees their answers).
    app.add_middleware(ObservabilityMiddleware)
    # Scrapes on the metrics port are neither counted nor logged, like those on the API port.
    app.add_middleware(MetricsPortMiddleware, port=settings.metrics_port)
    app.add_middleware(RequestIdMiddleware)
    tracing.instrument_app(app, provider)
    _finalize_openapi(app)
    return app


def serve_app() -> FastAPI:
    """The app a worker process of ``agentctl serve --workers N`` builds (a uvicorn factory):
    settings from the environment, logging configured as in the parent."""
    from control_plane.kit.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.json_logs)
    return create_app(settings, tune_collector=True)


async def _flush_audit(state: AppState) -> None:
    """On shutdown, sequence what is still queued and sign a checkpoint of every log that grew,
    so a stopped replica leaves no work for the others' next round. Bounded (5 s at most, so an
    unreachable database does not hold the exit): what is left waits durably for another
    replica, or this one's next start."""
    try:
        await asyncio.wait_for(
            state.audit_worker.run_once(checkpoint=True),
            timeout=min(5.0, state.settings.shutdown_grace_seconds),
        )
    except Exception as exc:
        log.warning("audit_flush_on_shutdown_failed", error_type=type(exc).__name__)


# The API document, generated once per process: every route is registered whatever the settings,
# so it is a function of the code alone (tests/test_openapi.py holds it to the committed file).
# Generating it takes about a second, and the 405 table (``MethodMiddleware``) needs it at the
# first request: that request no longer waits for it, nor does each app a test process builds.
_DOCUMENT: dict[str, Any] | None = None


def _finalize_openapi(app: FastAPI) -> None:
    """The document FastAPI generates, completed by ``kit.openapi_doc.finalize``: made from the
    first app of the process as ``create_app`` returns it (before a test adds a route), then
    a copy of it for each app."""
    global _DOCUMENT
    if _DOCUMENT is None:
        _DOCUMENT = finalize(app.openapi())
    document = _DOCUMENT

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = copy.deepcopy(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# How long start-up waits for the active policy revision to load (a wasm compile takes a
# second or two on a loaded machine; a remote OPA that is down fails at once).
POLICY_WARM_SECONDS = 60.0


async def _load_active_policy(state: AppState) -> None:
    """Load the active revision before serving, so the first decisions are not denied
    ``engine_not_loaded`` while it compiles. Never fatal: a failure is logged and the first
    decision retries the load, as after any failed load (deny until it succeeds)."""
    try:
        async with state.database.sessionmaker() as session:
            problem = await state.policy_runtime.warm(session, POLICY_WARM_SECONDS)
    except Exception as exc:  # the database is down at start-up: /readyz says so
        log.warning("policy_warm_failed", error_type=type(exc).__name__)
        return
    if problem is not None:
        log.warning("policy_not_loaded_at_start", detail=problem)

"""The application factory. ``create_app`` wires routers (``api.py``), error handlers and
middleware; the lifespan builds the typed ``AppState`` (database, key store, policy runtime,
background tasks) and stops it again. Nothing heavy happens at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from control_plane import __version__
from control_plane.api import build_api
from control_plane.audit.service import AuditContext, LogTrees
from control_plane.audit.worker import AuditWorker
from control_plane.config import Settings, get_settings
from control_plane.crypto import resolve_kek
from control_plane.crypto.keystore import KeyStore
from control_plane.events.relay import NatsRelay
from control_plane.events.webhooks import WebhookDispatcher
from control_plane.kit import dberrors
from control_plane.kit.database import Database
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
from control_plane.policy.engines import InputLimits, build_engine
from control_plane.policy.runtime import PolicyRuntime
from control_plane.state import AppState

DESCRIPTION = (
    "Registers agents and their versions, issues their credentials, decides on their actions "
    "with OPA policy and keeps the audit trail. Errors are RFC 9457 problem+json."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database.open(settings)
        keystore = KeyStore(database.sessionmaker, settings, database.read_sessionmaker)
        await keystore.start()
        limits = InputLimits()
        policy_engine = build_engine(
            settings.policy_engine,
            opa_url=settings.opa_url,
            timeout=settings.policy_timeout_seconds,
            threads=settings.policy_threads,
            limits=limits,
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
            policy_runtime=PolicyRuntime(
                policy_engine, settings.policy_bundle, load_wait=settings.policy_load_wait_seconds
            ),
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
            webhook_dispatcher=WebhookDispatcher(database, settings, kek),
        )
        app.state.context = state
        state.pruner.start()
        state.audit_worker.start()
        state.webhook_dispatcher.start()
        relay = (
            NatsRelay(database, settings.nats_url, settings.events_poll_seconds)
            if settings.nats_url
            else None
        )
        if relay is not None:
            relay.start()
        try:
            yield
        finally:
            if relay is not None:
                await relay.aclose()
            await state.webhook_dispatcher.aclose()
            await state.audit_worker.stop()
            await state.pruner.aclose()
            await state.policy_runtime.aclose()
            await database.aclose()

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
    app.add_middleware(MethodMiddleware, openapi=lambda: app.openapi())
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(UrlSanityMiddleware)
    app.add_middleware(RequestIdMiddleware)
    _finalize_openapi(app)
    return app


def _finalize_openapi(app: FastAPI) -> None:
    """The document FastAPI generates, completed by ``kit.openapi_doc.finalize``."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finalize(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

"""The application factory. ``create_app`` wires routers, error handlers and middleware; the
lifespan creates the database engine and hands it on through ``app.state``. Nothing heavy happens
at import time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from control_plane import __version__
from control_plane.agents.endpoints import router as agents_router
from control_plane.audit.endpoints import router as audit_router
from control_plane.audit.service import AuditContext, LogTrees
from control_plane.audit.worker import AuditWorker
from control_plane.config import Settings, get_settings
from control_plane.credentials.agent_auth import AgentAuthenticator
from control_plane.credentials.endpoints import router as credentials_router
from control_plane.credentials.endpoints import self_router as agent_self_router
from control_plane.credentials.keystore import KeyStore, resolve_kek
from control_plane.credentials.oauth import router as oauth_router
from control_plane.decisions.endpoints import router as decisions_router
from control_plane.domains.endpoints import router as domains_router
from control_plane.health.endpoints import router as health_router
from control_plane.kit import dberrors
from control_plane.kit.db import DatabaseTimeouts, create_engine, create_sessionmaker
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
from control_plane.operators.endpoints import router as operators_router
from control_plane.policy.endpoints import router as policies_router
from control_plane.policy.engines import InputLimits, build_engine
from control_plane.policy.runtime import PolicyRuntime

DESCRIPTION = (
    "Registers agents and their versions, issues their credentials, decides on their actions "
    "with OPA policy and keeps the audit trail. Errors are RFC 9457 problem+json."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            settings.resolved_database_url,
            pool_size=settings.database_pool_size,
            timeouts=DatabaseTimeouts(
                pool=settings.database_pool_timeout_seconds,
                statement=settings.database_statement_timeout_seconds,
                connect=settings.database_connect_timeout_seconds,
            ),
        )
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.read_sessionmaker = create_sessionmaker(engine, read_only=True)
        app.state.sqlite_write_lock = asyncio.Lock() if settings.is_sqlite else None
        app.state.migration_head = head_revision()
        keystore = KeyStore(app.state.sessionmaker, settings, app.state.read_sessionmaker)
        await keystore.start()
        app.state.keystore = keystore
        app.state.redaction_key = redaction_key(resolve_kek(settings))
        app.state.agent_authenticator = AgentAuthenticator(keystore, settings)
        limits = InputLimits()
        policy_engine = build_engine(
            settings.policy_engine,
            opa_url=settings.opa_url,
            timeout=settings.policy_timeout_seconds,
            threads=settings.policy_threads,
            limits=limits,
        )
        app.state.input_limits = limits
        runtime = PolicyRuntime(
            policy_engine, settings.policy_bundle, load_wait=settings.policy_load_wait_seconds
        )
        app.state.policy_runtime = runtime
        kek = resolve_kek(settings)
        app.state.kek = kek
        app.state.audit_context = AuditContext.from_issuer(
            app.state.redaction_key, settings.issuer_url
        )
        app.state.audit_trees = LogTrees()
        worker = AuditWorker(
            app.state.sessionmaker,
            app.state.audit_context,
            app.state.audit_trees,
            kek,
            interval=settings.audit_sequencer_interval_seconds,
            checkpoint_seconds=settings.audit_checkpoint_seconds,
            writer_lock=app.state.sqlite_write_lock,
        )
        app.state.audit_worker = worker
        worker.start()
        try:
            yield
        finally:
            await worker.stop()
            await runtime.aclose()
            await engine.dispose()

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
    app.state.settings = settings
    install_error_handlers(app)
    dberrors.install(app)
    app.include_router(health_router)
    app.include_router(domains_router)
    app.include_router(agent_self_router)  # /v1/agents/me before /v1/agents/{agent_id}
    app.include_router(agents_router)
    app.include_router(credentials_router)
    app.include_router(operators_router)
    app.include_router(policies_router)
    app.include_router(decisions_router)
    app.include_router(audit_router)
    app.include_router(oauth_router)
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

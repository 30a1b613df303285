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
from control_plane.config import Settings, get_settings
from control_plane.crypto.keystore import KeyStore
from control_plane.kit.database import Database
from control_plane.kit.errors import (
    PROBLEM_CONTENT_TYPE,
    error_responses,
    install_error_handlers,
)
from control_plane.kit.middleware import (
    BodyLimitMiddleware,
    RequestIdMiddleware,
    UrlSanityMiddleware,
)
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
            pruner=Pruner(database, settings.prune_interval_seconds),
        )
        app.state.context = state
        state.pruner.start()
        try:
            yield
        finally:
            await state.pruner.aclose()
            await state.policy_runtime.aclose()
            await database.aclose()

    app = FastAPI(
        title="agent-control-plane",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Any route may meet an oversized body or an unavailable database.
        responses=error_responses(413, 503),
    )
    install_error_handlers(app)
    app.include_router(build_api())
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(UrlSanityMiddleware)
    app.add_middleware(RequestIdMiddleware)
    _problem_only_errors(app)
    return app


def _problem_only_errors(app: FastAPI) -> None:
    """Error answers are problem+json only; FastAPI would also list application/json."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        if status[:1] in "45" and PROBLEM_CONTENT_TYPE in content:
                            content.pop("application/json", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

"""The ops tests' app records its spans in memory (``span_exporter``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.engine import make_url

from control_plane.app import create_app
from control_plane.config import Settings
from control_plane.migrate import upgrade
from tests.conftest import PG_URL, _bootstrap, _pg_admin, _pg_drop


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def app(settings: Settings, span_exporter: InMemorySpanExporter) -> AsyncIterator[FastAPI]:
    await _bootstrap(settings)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    application = create_app(settings, tracer_provider=provider)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database (tests using it are marked ``postgres``)."""
    if PG_URL is None:
        pytest.skip("AGENTCTL_TEST_DATABASE_URL is not set")
    name = f"acp_ops_{uuid.uuid4().hex[:16]}"
    template = f"acp_ops_tpl_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_admin(f"CREATE DATABASE {template}"))
    try:
        upgrade(make_url(PG_URL).set(database=template).render_as_string(hide_password=False))
        asyncio.run(_pg_admin(f"CREATE DATABASE {name} TEMPLATE {template}"))
    finally:
        asyncio.run(_pg_drop(template))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_pg_drop(name))

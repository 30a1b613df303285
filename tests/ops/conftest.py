"""The ops tests' app records its spans in memory (``span_exporter``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from control_plane.app import create_app
from control_plane.config import Settings
from tests.conftest import _bootstrap


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

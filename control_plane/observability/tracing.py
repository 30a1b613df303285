"""OpenTelemetry traces: a span per request (FastAPI instrumentation) with a child span per SQL
statement (SQLAlchemy instrumentation), and the trace id handed to what the request stores.

An incoming W3C ``traceparent`` makes the request span its child, so a decision or audit record
carries the caller's trace id. Spans are exported over OTLP/HTTP only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, with the
exporter's standard ``OTEL_*`` settings. Otherwise no span records anything (the sampler is
``always_off`` unless ``OTEL_TRACES_SAMPLER`` names one) and SQL statements get no spans: trace
ids still exist, from ``traceparent`` or new, and are stored and logged, but nothing is spent
on spans nobody can read (about 0.1 ms per SQL statement, see README, Performance). Each app
has its own ``TracerProvider``: tests pass one with an in-memory exporter to ``create_app``.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import format_trace_id
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane import __version__

# Probes and scrapes would drown the traces that matter.
_EXCLUDED_URLS = "/healthz,/readyz,/metrics"
_ENDPOINT_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def enabled() -> bool:
    """False when ``OTEL_SDK_DISABLED=true`` (OpenTelemetry's own switch): no spans are made
    and no trace id is stored."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"


def exporting() -> bool:
    """Whether spans leave the process (an OTLP endpoint is configured)."""
    return any(os.environ.get(name) for name in _ENDPOINT_ENV)


def build_provider() -> TracerProvider:
    """The process's provider: ``OTEL_SERVICE_NAME`` or ``agent-control-plane``, and a batching
    OTLP/HTTP exporter when an endpoint is configured."""
    resource = Resource.create(
        {
            SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", "agent-control-plane"),
            SERVICE_VERSION: __version__,
        }
    )
    sampler = None if exporting() or os.environ.get("OTEL_TRACES_SAMPLER") else ALWAYS_OFF
    provider = TracerProvider(resource=resource, sampler=sampler)  # None: OTEL_TRACES_SAMPLER
    if exporting():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def instrument_app(app: FastAPI, provider: TracerProvider) -> None:
    """A server span per request (not for probes and scrapes), honouring ``traceparent``."""
    if not enabled():
        return
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=_EXCLUDED_URLS,
        # The send/receive sub-spans add nothing an operator reads.
        exclude_spans=["receive", "send"],
    )


def instrument_engine(engine: AsyncEngine, provider: TracerProvider) -> None:
    """A client span per SQL statement run on ``engine`` (no statement parameters recorded);
    none when ``provider`` samples nothing (``build_provider`` without an exporter)."""
    if not enabled() or provider.sampler is ALWAYS_OFF:
        return
    usage = (
        NoOpMeterProvider()
        .get_meter(__name__)
        .create_up_down_counter("db.client.connections.usage")
    )
    EngineTracer(  # type: ignore[no-untyped-call]
        trace.get_tracer(__name__, tracer_provider=provider), engine.sync_engine, usage
    )


def current_trace_id() -> str | None:
    """The current span's trace id (32 lower-case hex digits), or None outside any trace."""
    context = trace.get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None

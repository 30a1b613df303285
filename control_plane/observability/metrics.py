"""Every Prometheus metric the service exports, declared in one place, and their rendering.

Labels are bounded sets only: route templates (``/v1/agents/{agent_id}``, never the path with
ids), status codes, decision effects, engine names, error codes. No agent, client, domain or
record id ever becomes a label value (``tests/ops/test_metrics.py`` scans for them).

Several worker processes (``agentctl serve --workers N``) share the figures through
prometheus-client's multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` names a directory that
``agentctl serve`` creates empty before the workers start and that every worker writes its
samples to; ``render`` merges them. The variable must be set before prometheus_client is first
imported in a worker, which is why ``agentctl serve`` sets it before starting uvicorn.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "render"]

#: Text format 0.0.4: every Prometheus version reads it (the names here need nothing newer).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Latency buckets in seconds: a decision is about a millisecond, a bulk export many seconds.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "agentctl_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "agentctl_http_request_duration_seconds",
    "Time from the request's arrival to its last response byte, by method and route template.",
    ["method", "route"],
    buckets=_BUCKETS,
)
DECISIONS = Counter(
    "agentctl_decisions",
    "Decisions made and recorded, by effect and engine.",
    ["effect", "engine"],
)
SHADOW_EVALUATIONS = Counter(
    "agentctl_shadow_evaluations",
    "Decisions evaluated again with the shadow revision, by outcome: same, different (a "
    "difference recorded), dropped (the bounded queue was full, or the process stopped before "
    "it drained), failed.",
    ["outcome"],
)
DECISIONS_SERVED = Counter(
    "agentctl_decisions_served",
    "Decisions by the revision that answered: active or canary.",
    ["served_by"],
)
DECISION_LATENCY = Histogram(
    "agentctl_decision_duration_seconds",
    "Time to decide (registry lookup and policy evaluation), by engine.",
    ["engine"],
    buckets=_BUCKETS,
)
ENGINE_FAILURES = Counter(
    "agentctl_policy_engine_failures",
    "Decisions that failed closed (a recorded deny), by engine and failure reason.",
    ["engine", "reason"],
)
TOKENS_ISSUED = Counter("agentctl_tokens_issued", "Access tokens issued at /oauth/token.")
TOKENS_REFUSED = Counter(
    "agentctl_tokens_refused",
    "Token requests refused at /oauth/token, by OAuth error code (RFC 6749 section 5.2).",
    ["reason"],
)
AUDIT_INGESTED = Counter(
    "agentctl_audit_records_ingested",
    "Audit records durably written (new ones; idempotent repeats are not counted), by source.",
    ["source"],
)
AUDIT_SEQUENCED = Counter(
    "agentctl_audit_records_sequenced", "Audit records appended to a log by this replica."
)
AUDIT_CHECKPOINTS = Counter(
    "agentctl_audit_checkpoints_signed", "Signed checkpoints written by this replica."
)
BUNDLE_BUILDS = Counter(
    "agentctl_policy_bundle_builds",
    "Policy builds (the wasm module OPA compiles for a new revision; bundle archives), by kind "
    "and outcome (ok, failed).",
    ["kind", "outcome"],
)
DB_POOL_IN_USE = Gauge(
    "agentctl_db_pool_connections_in_use",
    "Database connections checked out of the pool, summed over live worker processes.",
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "agentctl_db_pool_size",
    "Database pool size (connections kept open), summed over live worker processes.",
    multiprocess_mode="livesum",
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


def observe_decision(effect: str, engine: str, failure: str | None, started: float) -> None:
    """One decision: its effect, the engine that made it and, when it failed closed, the
    engine's failure code (a closed set: ``policy.engines.FailureCode``); ``started`` is the
    ``time.perf_counter()`` reading when deciding began. Each decision writes one audit record."""
    DECISIONS.labels(effect, engine).inc()
    DECISION_LATENCY.labels(engine).observe(time.perf_counter() - started)
    AUDIT_INGESTED.labels("decision").inc()
    if failure is not None:
        ENGINE_FAILURES.labels(engine, failure).inc()


def observe_shadow(outcome: str) -> None:
    """One shadow evaluation (``policy.shadow``): ``same``, ``different`` (a difference
    recorded), ``dropped`` (the queue was full, or the process stopped before it drained) or
    ``failed``."""
    SHADOW_EVALUATIONS.labels(outcome).inc()


def observe_canary(served_by: str) -> None:
    """One decision answered by the ``active`` or the ``canary`` revision."""
    DECISIONS_SERVED.labels(served_by).inc()


def observe_token(refused_reason: str | None) -> None:
    if refused_reason is None:
        TOKENS_ISSUED.inc()
    else:
        TOKENS_REFUSED.labels(refused_reason).inc()


def observe_audit_ingested(count: int, source: str) -> None:
    """``count`` new audit records written; ``source`` is ``decision`` or ``ingest``."""
    if count:
        AUDIT_INGESTED.labels(source).inc(count)


def observe_bundle_build(kind: str, *, ok: bool) -> None:
    BUNDLE_BUILDS.labels(kind, "ok" if ok else "failed").inc()


def observe_pool(in_use: int, size: int) -> None:
    DB_POOL_IN_USE.set(in_use)
    DB_POOL_SIZE.set(size)


class Snapshot(Collector):
    """Figures read from the database at scrape time (the same in every replica): they are
    rendered as they are, never stored in a worker's samples."""

    def __init__(self, gauges: dict[str, tuple[str, float]]) -> None:
        self._gauges = gauges

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for name, (help_text, value) in self._gauges.items():
            yield GaugeMetricFamily(name, help_text, value=value)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def registry() -> CollectorRegistry:
    """This process's samples, or every live and dead worker's merged in multiprocess mode."""
    if multiprocess_dir() is None:
        return REGISTRY
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged


def render(snapshot: dict[str, tuple[str, float]] | None = None) -> bytes:
    """The text exposition format (version 0.0.4) of every metric, plus ``snapshot``'s gauges
    (name -> (help, value))."""
    text = generate_latest(registry())
    if snapshot:
        extra = CollectorRegistry()
        extra.register(Snapshot(snapshot))
        text += generate_latest(extra)
    return text


def process_exited() -> None:
    """In multiprocess mode, drop this process's live gauges (its pool figures) on exit."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

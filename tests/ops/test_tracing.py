"""Traces: an incoming traceparent reaches the stored decision and its audit record, and the
request span has the SQL statements as child spans."""

from __future__ import annotations

import secrets

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from control_plane.app import create_app
from control_plane.config import Settings
from control_plane.observability import tracing
from tests.audit.support import settle
from tests.conftest import ADMIN_TOKEN, _bootstrap
from tests.fixtures.decisions import REFUND, decider


async def test_traceparent_reaches_decision_audit_record_and_db_spans(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    span_exporter: InMemorySpanExporter,
) -> None:
    me = await decider(client, admin)
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    span_exporter.clear()
    r = await client.post(
        "/v1/decisions",
        json=REFUND,
        headers={**me["headers"], "traceparent": f"00-{trace_id}-{parent_id}-01"},
    )
    assert r.status_code == 200, r.text
    decision_id = r.json()["decision_id"]

    spans = [s for s in span_exporter.get_finished_spans() if s.context is not None]
    ours = [s for s in spans if format_trace_id(s.context.trace_id) == trace_id]
    server = [s for s in ours if s.kind is SpanKind.SERVER]
    assert len(server) == 1, [s.name for s in ours]
    request_span = server[0]
    assert request_span.name == "POST /v1/decisions"
    assert request_span.parent is not None
    assert format_span_id(request_span.parent.span_id) == parent_id
    db = [
        s
        for s in ours
        if s.kind is SpanKind.CLIENT and s.attributes and "db.system" in str(dict(s.attributes))
    ]
    assert db, [s.name for s in ours]
    assert all(
        s.parent is not None and s.parent.span_id == request_span.context.span_id for s in db
    )
    statements = " ".join(s.name for s in db)
    # The decision and its audit record: INSERTs (on PostgreSQL one statement of data-modifying
    # CTEs, whose span is named WITH: its db.statement says INSERT).
    sql = " ".join(str((s.attributes or {}).get("db.statement", s.name)) for s in db)
    assert "INSERT" in sql
    assert "SELECT" in statements

    records = (await client.get("/v1/decisions", headers=admin)).json()["data"]
    assert [d["trace_id"] for d in records if d["id"] == decision_id] == [trace_id]
    await settle(app)
    found = await client.get("/v1/audit/records", params={"trace_id": trace_id}, headers=admin)
    assert found.status_code == 200, found.text
    audit = found.json()["data"]
    assert [a["decision_id"] for a in audit] == [decision_id]
    assert audit[0]["trace_id"] == trace_id


async def test_without_traceparent_a_new_trace_is_stored(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin)
    r = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
    records = (await client.get("/v1/decisions", headers=admin)).json()["data"]
    (stored,) = [d["trace_id"] for d in records if d["id"] == r.json()["decision_id"]]
    assert stored is not None
    assert len(stored) == 32
    assert int(stored, 16) != 0


async def test_without_an_exporter_nothing_is_recorded_but_trace_ids_are_stored(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default provider with no OTLP endpoint: spans would go nowhere, so none records
    anything and SQL statements get none (their cost is on the decision hot path), yet a
    caller's traceparent still reaches the stored decision."""
    for name in (*tracing._ENDPOINT_ENV, "OTEL_TRACES_SAMPLER"):
        monkeypatch.delenv(name, raising=False)
    assert tracing.build_provider().sampler is ALWAYS_OFF
    await _bootstrap(settings)
    application = create_app(settings)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://test"
        ) as client,
    ):
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        me = await decider(client, admin)
        trace_id = secrets.token_hex(16)
        r = await client.post(
            "/v1/decisions",
            json=REFUND,
            headers={**me["headers"], "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        )
        assert r.status_code == 200, r.text
        # Without traceparent, and with one that W3C Trace Context refuses (an all-zero trace
        # id), each request starts a trace of its own.
        plain = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
        zero = f"00-{'0' * 32}-{secrets.token_hex(8)}-01"
        bad = await client.post(
            "/v1/decisions", json=REFUND, headers={**me["headers"], "traceparent": zero}
        )
        records = (await client.get("/v1/decisions", headers=admin)).json()["data"]
        stored = {d["id"]: d["trace_id"] for d in records}
        assert stored[r.json()["decision_id"]] == trace_id
        fresh = [stored[plain.json()["decision_id"]], stored[bad.json()["decision_id"]]]
        assert all(t is not None and len(t) == 32 and int(t, 16) != 0 for t in fresh)
        assert len({trace_id, *fresh}) == 3
    # An operator who names a sampler gets it, exporter or not.
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    assert tracing.build_provider().sampler is not ALWAYS_OFF

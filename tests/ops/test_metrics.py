"""GET /metrics: Prometheus text a real parser reads, the walk-through's counters, no id labels."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from tests.audit.support import record, send, settle, writer
from tests.fixtures.decisions import REFUND
from tests.fixtures.factories import create_operator
from tests.fixtures.oauth2 import basic
from tests.ops.support import id_like_labels, samples, total


async def scrape(client: httpx.AsyncClient, headers: dict[str, str]) -> dict:  # type: ignore[type-arg]
    r = await client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(r.text)


async def test_walk_through_counts_decisions_tokens_and_audit_without_id_labels(
    app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    before = await scrape(client, admin)
    me = await writer(client, admin)  # registers an agent and issues one token
    agent_id = me["agent"]["id"]
    for _ in range(3):
        r = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
        assert r.status_code == 200, r.text
    denied = {"action": "payments.payout", "resource": {"type": "order", "id": "o-2"}}
    assert (await client.post("/v1/decisions", json=denied, headers=me["headers"])).json()[
        "effect"
    ] == "deny"
    refused = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic("no-such-client", "wrong"),
    )
    assert refused.status_code == 401
    assert await send(client, me["headers"], [record(), record()]) == ["stored", "stored"]
    await client.get(f"/v1/agents/{agent_id}", headers=admin)
    await client.get(f"/v1/agents/{uuid.uuid4()}", headers=admin)  # a 404 on a templated path
    await client.get("/no/such/path/42")
    await settle(app)

    after = await scrape(client, admin)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("agentctl_decisions_total", effect="allow", engine="wasm") == 3
    assert grew("agentctl_decisions_total", effect="deny", engine="wasm") == 1
    assert grew("agentctl_decision_duration_seconds_count", engine="wasm") == 4
    assert grew("agentctl_tokens_issued_total") == 1
    assert grew("agentctl_tokens_refused_total", reason="invalid_client") == 1
    assert grew("agentctl_audit_records_ingested_total", source="ingest") == 2
    assert grew("agentctl_audit_records_ingested_total", source="decision") == 4
    assert (
        grew(
            "agentctl_http_requests_total",
            method="POST",
            route="/v1/decisions",
            status="200",
        )
        == 4
    )
    assert (
        grew(
            "agentctl_http_requests_total",
            method="GET",
            route="/v1/agents/{agent_id}",
            status="404",
        )
        == 1
    )
    assert grew("agentctl_http_requests_total", route="unmatched", status="404") == 1
    assert grew("agentctl_http_request_duration_seconds_count", route="/v1/decisions") == 4
    # Settled: nothing waits for a sequence number or a checkpoint.
    assert total(after, "agentctl_audit_pending_records") == 0
    assert total(after, "agentctl_audit_unsigned_leaves") == 0
    assert total(after, "agentctl_audit_sequencing_lag_seconds") == 0
    assert id_like_labels(after) == []


def test_the_id_scan_catches_what_it_must() -> None:
    """The scan is only worth something if an id-valued label fails it."""
    bad = (
        '# TYPE x counter\nx_total{route="/v1/agents/0193c5e2-6f1a-7c3e-9b1a-2f6d8e4c1a7b"} 1\n'
        '# TYPE y counter\ny_total{route="/v1/audit/logs/payments/proof/12"} 1\n'
        '# TYPE z counter\nz_total{route="/v1/agents/{agent_id}",status="200"} 1\n'
    )
    assert len(id_like_labels(samples(bad))) == 2


async def test_metrics_needs_an_operator_with_metrics_read(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    anonymous = await client.get("/metrics", headers={"X-Request-ID": "scrape-1"})
    assert anonymous.status_code == 401
    assert anonymous.headers["x-request-id"] == "scrape-1"
    assert anonymous.json()["request_id"] == "scrape-1"
    approver = await create_operator(client, admin, role="approver")
    r = await client.get("/metrics", headers=approver)
    assert r.status_code == 403
    assert r.json()["request_id"] == r.headers["x-request-id"]
    auditor = await create_operator(client, admin, role="auditor")
    r = await client.get("/metrics", headers=auditor)
    assert r.status_code == 200


@pytest.mark.parametrize("path", ["/v1/agents", "/"])
async def test_problem_bodies_carry_the_request_id(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code in (401, 404)
    assert r.json()["request_id"] == r.headers["x-request-id"]

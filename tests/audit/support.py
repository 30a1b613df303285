"""Helpers for audit tests: records, an agent that may write them, settling the log."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from control_plane.audit import repository
from control_plane.state import app_state
from tests.fixtures.decisions import decider


async def writer(
    client: httpx.AsyncClient, admin: dict[str, str], *, name: str = "refund-bot", **kw: Any
) -> dict[str, Any]:
    """An agent with decisions:create and audit:write; {"agent", "headers"}."""
    return await decider(client, admin, name=name, scopes=["decisions:create", "audit:write"], **kw)


def record(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "timestamp": "2026-11-29T10:00:00Z",
        "action": "payments.refund",
        "resource": {"type": "order", "id": "o-1"},
        "inputs": {"amount": 40},
        "outputs": {"refund_id": "r-1"},
        "rationale": "customer asked",
        "status": "succeeded",
    }
    body.update(fields)
    return body


async def send(
    client: httpx.AsyncClient, headers: dict[str, str], records: list[dict[str, Any]]
) -> list[str]:
    r = await client.post("/v1/audit/records", json={"records": records}, headers=headers)
    assert r.status_code == 200, r.text
    return [item["status"] for item in r.json()["records"]]


async def settle(app: FastAPI, timeout: float = 10.0) -> None:
    """Run the sequencer and checkpointer now (the real worker, forced rounds) until every log
    is sequenced and checkpointed. The background worker may hold a log's lock for a moment,
    in which case a forced round skips that log, so repeat."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        state = app_state(app)
        await state.audit_worker.run_once(checkpoint=True)
        async with state.database.read_sessionmaker() as session:
            pending = await repository.pending_domains(session)
            behind = []
            for domain in await repository.log_domains(session):
                latest = await repository.latest_checkpoint(session, domain)
                if latest is None or latest.size < await repository.log_size(session, domain):
                    behind.append(domain)
        if not pending and not behind:
            return
        assert asyncio.get_running_loop().time() < deadline, (pending, behind)
        await asyncio.sleep(0.05)

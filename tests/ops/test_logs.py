"""The request log of a real server in production form: one JSON line per request with its
request id, route template, status, latency and principal kind, and never a token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ADMIN_TOKEN
from tests.fixtures.decisions import REFUND, decider
from tests.fixtures.servers import server_env
from tests.ops.servers import start, stop


def _json_lines(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


async def test_one_json_line_per_request_without_secrets(db_url: str, tmp_path: Path) -> None:
    env = server_env(db_url, tmp_path, AGENTCTL_ADMIN_TOKEN=ADMIN_TOKEN, AGENTCTL_LOG_JSON="true")
    log = tmp_path / "server.log"
    server = start(env, log)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            me = await decider(client, admin)
            token = me["headers"]["Authorization"].removeprefix("Bearer ")
            r = await client.post(
                "/v1/decisions", json=REFUND, headers={**me["headers"], "X-Request-ID": "req-42"}
            )
            assert r.status_code == 200
            assert r.headers["x-request-id"] == "req-42"
            missing = await client.get(f"/v1/agents/{me['agent']['id']}x", headers=admin)
            assert missing.status_code == 422
    finally:
        stop(server)

    # Every line is JSON, uvicorn's own (started, running on, shutting down) included.
    plain = [line for line in log.read_text().splitlines() if line.strip() and line[0] != "{"]
    assert plain == []
    lines = _json_lines(log)
    assert any(line.get("logger") == "uvicorn.error" for line in lines)
    mine = [line for line in lines if line.get("request_id") == "req-42"]
    (request_line,) = [line for line in mine if line["event"] == "request"]
    assert request_line["route"] == "/v1/decisions"
    assert request_line["status"] == 200
    assert request_line["principal_kind"] == "agent"
    assert request_line["latency_ms"] > 0
    assert len(request_line["trace_id"]) == 32
    bad = next(
        line
        for line in lines
        if line.get("event") == "request" and line["request_id"] == missing.headers["x-request-id"]
    )
    assert bad["route"] == "/v1/agents/{agent_id}"
    assert bad["status"] == 422
    assert bad["principal_kind"] == "operator"
    text = log.read_text()
    assert token not in text
    assert ADMIN_TOKEN not in text
    assert "client_secret" not in text
    # JSON mode: uvicorn's own plain-text access line is off; each request is logged once.
    assert '"POST /v1/decisions HTTP/1.1" 200' not in text

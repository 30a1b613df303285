"""A client that leaves while its request body is still arriving costs the server nothing.

The body of a POST is read by several layers before a route runs (the SQLite writer queue, the
``Idempotency-Key`` check, the OAuth token endpoint, the audit ingest that parses the raw
bytes). Each of those saw the client's disconnect as an unhandled exception and
logged it as a 500. Now it is logged as ``client_disconnected``, nothing is written, and the
server goes on serving.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.chaos.support import ADMIN, ADMIN_TOKEN, KEK, agent_headers
from tests.fixtures.servers import server_env, serving

ROUTES = [
    ("/oauth/token", "application/x-www-form-urlencoded", False),
    ("/v1/domains", "application/json", True),  # the writer queue reads the body first
    ("/v1/decisions", "application/json", "agent"),  # with an Idempotency-Key
    ("/v1/audit/records", "application/json", "agent"),
]


def _half_sent(url: str, path: str, content_type: str, authorization: str | None) -> None:
    """Headers promising 1,000 bytes, ten of them, then the connection closes."""
    parts = urlsplit(url)
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {parts.netloc}",
        f"Content-Type: {content_type}",
        "Content-Length: 1000",
        "Idempotency-Key: half-sent-1",
    ]
    if authorization:
        head.append(f"Authorization: {authorization}")
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b'{"name": "')
        time.sleep(0.2)  # the server is now waiting for the rest of the body


@pytest.mark.parametrize(("path", "content_type", "auth"), ROUTES, ids=[r[0] for r in ROUTES])
def test_a_client_leaving_mid_body_is_logged_not_a_500(
    db_url: str, tmp_path: Path, path: str, content_type: str, auth: bool | str
) -> None:
    env = server_env(
        db_url, tmp_path, AGENTCTL_ADMIN_TOKEN=ADMIN_TOKEN, AGENTCTL_KEY_ENCRYPTION_KEY=KEK
    )
    log = tmp_path / "server.log"
    with serving(env, log) as url:
        authorization = None
        if auth == "agent":
            scopes = ("decisions:create", "audit:write")
            authorization = agent_headers(url, scopes)["Authorization"]
        elif auth:
            authorization = ADMIN["Authorization"]
        with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as c:
            domains = c.get("/v1/domains").json()["data"]
            _half_sent(url, path, content_type, authorization)
            deadline = time.monotonic() + 30
            while "client_disconnected" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "client_disconnected" in log.read_text()
            # Nothing was written and the server goes on answering.
            assert c.get("/v1/domains").json()["data"] == domains
            assert c.post("/v1/domains", json={"name": "after"}).status_code == 201
    # ``serving`` fails the test if the server logged a 500 or an unhandled exception.

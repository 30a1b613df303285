"""Fixtures for the credentials crypto tests: keys, rings, a token forger and a fake key server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from control_plane.crypto.signing import KeyRecord, SigningKey, SigningKeyRing, generate_signing_key
from tests.credentials.support import AUDIENCE, ISSUER, NOW, Forge, record


@pytest.fixture
def forge() -> Forge:
    return Forge()


@pytest.fixture(scope="session")
def ed_key() -> SigningKey:
    return generate_signing_key("EdDSA")


@pytest.fixture(scope="session")
def es_key() -> SigningKey:
    return generate_signing_key("ES256")


@pytest.fixture(scope="session")
def attacker_key() -> SigningKey:
    return generate_signing_key("EdDSA")


@pytest.fixture
def make_record() -> Callable[..., KeyRecord]:
    """`make_record(key, created_epoch, retired_at=..., not_after=...)` -> KeyRecord."""
    return record


@pytest.fixture
def ring(ed_key: SigningKey) -> SigningKeyRing:
    """A ring whose only (and signing) key is `ed_key`, active since an hour before NOW."""
    return SigningKeyRing([record(ed_key, NOW - 3600)])


@pytest.fixture
def claims() -> Callable[..., dict[str, Any]]:
    """Valid access-token claims at NOW, with overrides (a value of ... removes the claim)."""

    def build(**overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "agent-1",
            "aud": AUDIENCE,
            "exp": NOW + 600,
            "iat": NOW,
            "jti": "jti-1",
            "client_id": "client-1",
            "scope": "decisions:create",
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not ...}

    return build


@dataclass
class KeyServer:
    """A local HTTP server that would hand out the attacker's key if anyone asked."""

    url: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def key_server(attacker_key: SigningKey) -> Iterator[KeyServer]:
    body = json.dumps({"keys": [attacker_key.public_jwk()]}).encode()
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield KeyServer(url=f"http://127.0.0.1:{server.server_address[1]}", requests=seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def outbound_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records (and blocks) every outbound socket connection attempted during the test."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("outbound connection attempted during token verification")

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(address)
        raise OSError("outbound connection attempted during token verification")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    # Sanity: the patch is live (guards against the test silently checking nothing).
    assert socket.socket.connect is not real_connect
    return attempts

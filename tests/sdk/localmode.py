"""Helpers for the local-mode tests: bundles built and signed by the pinned OPA, agent tokens
signed with a key the bundle publishes, and a small bundle server speaking the contract of
docs/federation.md (token endpoint, ``GET /v1/bundles/{domain}`` with ETag and long polling,
``POST /v1/logs``, ``POST /v1/status``), for signature, tamper, staleness and disk-cache
behaviour. The end-to-end tests use a real ``agentctl serve`` instead."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import ssl
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

ROOT = Path(__file__).parents[2]
OPA = os.environ.get("AGENTCTL_OPA_BIN") or shutil.which("opa")
ISSUER = "https://cp.test"
AUDIENCE = "https://cp.test/v1"
DOMAIN = "payments"
AGENT_ID = "5f0c2a4e-8d0b-4a39-9a57-0d7b1f1e2a01"
OTHER_AGENT_ID = "0a7d3c1e-6f5b-4b2a-8e6c-3b9d1f0e4c02"
AGENT_CLIENT = "agent-client"
AGENT_SECRET = "agent-secret-0123456789"
EP_CLIENT = "ep-client"
EP_SECRET = "ep-secret-0123456789"

needs_opa = pytest.mark.skipif(OPA is None, reason="needs the pinned OPA (AGENTCTL_OPA_BIN)")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def rsa_pem() -> tuple[bytes, str]:
    """(private PEM, public PEM) of a fresh RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


@dataclass
class TokenKey:
    """The control plane's token signing key, as the bundle's JWKS publishes it."""

    kid: str = "tok-1"
    key: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)

    def jwk(self) -> dict[str, Any]:
        raw = self.key.public_key().public_bytes_raw()
        return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw), "kid": self.kid, "alg": "EdDSA"}

    def token(self, sub: str = AGENT_ID, *, lifetime: int = 600, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub,
            "client_id": AGENT_CLIENT,
            "scope": "decisions:create",
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            "domain": DOMAIN,
            **claims,
        }
        header = {"alg": "EdDSA", "kid": self.kid, "typ": "at+jwt"}
        signing_input = f"{b64json(header)}.{b64json(body)}"
        return f"{signing_input}.{b64(self.key.sign(signing_input.encode()))}"


def agent_doc(agent_id: str = AGENT_ID, *, status: str = "active", name: str = "refund-bot"):
    return {
        "id": agent_id,
        "name": name,
        "domain": DOMAIN,
        "status": status,
        "autonomy_level": 1,
        "labels": {},
        "version": {"id": str(uuid.uuid4()), "version": "1.0.0", "state": "active"},
    }


def bundle_data(token_key: TokenKey, **overrides: Any) -> dict[str, Any]:
    """The shipped policy data plus ``federation`` (docs/federation.md section 2)."""
    data = json.loads((ROOT / "policies" / "data.json").read_text())
    federation = {
        "edge": True,
        "domain": DOMAIN,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks": {"keys": [token_key.jwk()]},
        "agents": {AGENT_ID: agent_doc()},
        "max_staleness_seconds": 300,
    }
    federation.update(overrides)
    data["federation"] = federation
    return data


def opa_build(
    workdir: Path,
    data: dict[str, Any],
    signing_key: bytes,
    *,
    key_id: str = "bundle-key",
    policy: str | None = None,
) -> bytes:
    """A wasm bundle built and signed by the pinned OPA (RS256, no scope); ``policy``: Rego
    source in place of the shipped policy."""
    assert OPA is not None
    src = workdir / f"src-{uuid.uuid4().hex[:8]}"
    src.mkdir(parents=True)
    if policy is None:
        shutil.copy(ROOT / "policies" / "agents" / "authz.rego", src / "authz.rego")
    else:
        (src / "authz.rego").write_text(policy)
    (src / "data.json").write_text(json.dumps(data))
    key_file = workdir / f"key-{uuid.uuid4().hex[:8]}.pem"
    key_file.write_bytes(signing_key)
    claims = workdir / f"claims-{uuid.uuid4().hex[:8]}.json"
    claims.write_text(json.dumps({"keyid": key_id}))
    out = workdir / f"bundle-{uuid.uuid4().hex[:8]}.tar.gz"
    subprocess.run(
        [
            OPA,
            "build",
            "-b",
            str(src),
            "-t",
            "wasm",
            "-e",
            "agents/authz/decision",
            "--signing-key",
            str(key_file),
            "--signing-alg",
            "RS256",
            "--claims-file",
            str(claims),
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out.read_bytes()


def members(raw: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar
            if m.isreg()
        }


def pack(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def signed_payload(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JWS header, payload) of a bundle's signature."""
    token = json.loads(members(raw)["/.signatures.json"])["signatures"][0]
    head, body, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(head))),
        json.loads(base64.urlsafe_b64decode(pad(body))),
    )


def resign(raw: bytes, signing_key: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    """The bundle with its signature payload edited and signed again with ``signing_key``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header, payload = signed_payload(raw)
    edit(payload)
    key = serialization.load_pem_private_key(signing_key, password=None)
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
    files = members(raw)
    files["/.signatures.json"] = json.dumps(
        {"signatures": [f"{signing_input}.{b64(signature)}"], "plugin": "_default"}
    ).encode()
    return pack(files)


# --- a bundle server speaking the federation contract --------------------------------------------


class BundleServer:
    """Serves one domain's bundle by ETag (and long polling), takes logs and status."""

    def __init__(self, token_key: TokenKey, tls: ssl.SSLContext | None = None) -> None:
        self.token_key = token_key
        self.bundle: bytes | None = None
        self.agent_token = token_key.token()
        self.logs: dict[str, dict[str, Any]] = {}
        self.log_posts = 0
        self.duplicates = 0
        self.statuses: list[dict[str, Any]] = []
        self.bundle_requests = 0
        self.fail_logs = False
        self.down = False  # every request answers 503: the centre is out
        self.bundles_down = False  # only the bundle service answers 503
        self.token_expires_in = 600
        self.token_delay = 0.0  # seconds the token endpoint takes to answer
        self.cond = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", ctype: str = "application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in getattr(self, "_extra", {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if server.down:
                    self._send(503, b"{}")
                    return
                if self.path == "/oauth/token":
                    time.sleep(server.token_delay)
                    user = base64.b64decode(self.headers["Authorization"].split()[1]).decode()
                    token = server.agent_token if user.startswith(AGENT_CLIENT) else "ep-token"
                    answer = {
                        "access_token": token,
                        "token_type": "Bearer",
                        "expires_in": server.token_expires_in,
                    }
                    self._send(200, json.dumps(answer).encode())
                elif self.path == "/v1/logs":
                    if server.fail_logs:
                        self._send(503, b"{}")
                        return
                    if self.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    accepted = duplicates = 0
                    with server.cond:
                        server.log_posts += 1
                        for event in json.loads(body):
                            if event["decision_id"] in server.logs:
                                duplicates += 1
                                server.duplicates += 1
                            else:
                                server.logs[event["decision_id"]] = event
                                accepted += 1
                    answer = {"accepted": accepted, "duplicates": duplicates, "rejected": []}
                    self._send(200, json.dumps(answer).encode())
                elif self.path == "/v1/status":
                    server.statuses.append(json.loads(body))
                    self._send(204)
                else:
                    self._send(404, b"{}")

            def do_GET(self) -> None:
                if server.down or server.bundles_down:
                    self._send(503, b"{}")
                    return
                if self.path != f"/v1/bundles/{DOMAIN}" or server.bundle is None:
                    self._send(404, b"{}")
                    return
                server.bundle_requests += 1
                wait = 0
                prefer = self.headers.get("Prefer", "")
                if prefer.startswith("wait="):
                    wait = int(prefer[5:])
                deadline = time.monotonic() + wait
                with server.cond:
                    while True:
                        etag = f'"{hashlib.sha256(server.bundle).hexdigest()}"'
                        if self.headers.get("If-None-Match") != etag:
                            break
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        server.cond.wait(min(left, 0.1))
                    raw = server.bundle
                self._extra = {"ETag": etag}
                ctype = "application/vnd.openpolicyagent.bundles" if wait else "application/gzip"
                if self.headers.get("If-None-Match") == etag:
                    self._send(304, b"", ctype)
                else:
                    self._send(200, raw, ctype)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:  # a handshake a client refuses fails that connection only
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def publish(self, raw: bytes) -> None:
        with self.cond:
            self.bundle = raw
            self.cond.notify_all()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def bundle_server(token_key: TokenKey, tls: ssl.SSLContext | None = None) -> Iterator[BundleServer]:
    """A started `BundleServer`; ``tls``: serve https with that server context."""
    server = BundleServer(token_key, tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()

"""A control plane and a stock OPA sidecar wired as docs/federation.md says, for the tests.

``Plane`` drives a real ``agentctl serve`` over HTTP (sync httpx); ``start_opa`` runs the pinned
OPA with the configuration ``agentctl enforcement-points config`` prints.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.servers import ROOT, free_port, server_env
from tests.fixtures.tls import make_tls, tls_context

ADMIN_TOKEN = "acp_op_federation-admin-token-0123456789abcdef"


def opa_bin() -> str:
    found = os.environ.get("AGENTCTL_OPA_BIN") or str(
        Path.home() / ".cache/agentctl/tools/opa-v1.22.2/opa"
    )
    assert Path(found).is_file(), "the pinned OPA is needed (make opa)"
    return found


@dataclass
class Plane:
    url: str
    ca: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None  # the server's output (``start_plane``)
    admin: dict[str, str] = field(
        default_factory=lambda: {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )

    @property
    def tls(self) -> ssl.SSLContext:
        return tls_context(self.ca)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        kw.setdefault("headers", self.admin)
        return httpx.post(self.url + path, timeout=30, verify=self.tls, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        kw.setdefault("headers", self.admin)
        return httpx.get(self.url + path, timeout=30, verify=self.tls, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        kw.setdefault("headers", self.admin)
        return httpx.put(self.url + path, timeout=30, verify=self.tls, **kw)

    def domain(self, name: str) -> None:
        r = self.post("/v1/domains", json={"name": name})
        assert r.status_code in (201, 409), r.text

    def agent(self, domain: str, name: str, autonomy_level: int = 3) -> dict[str, Any]:
        """An agent with an active version and a token (``token``)."""
        r = self.post(
            "/v1/agents",
            json={"name": name, "domain": domain, "owner": "o", "autonomy_level": autonomy_level},
        )
        assert r.status_code == 201, r.text
        agent: dict[str, Any] = r.json()
        r = self.post(
            f"/v1/agents/{agent['id']}/versions",
            json={
                "version": "1.0.0",
                "model_name": "m",
                "model_version": "1",
                "artifact_digest": "sha256:" + "ab" * 32,
            },
        )
        assert r.status_code == 201, r.text
        version = r.json()
        for step in ("approve", "activate"):
            r = self.post(f"/v1/agents/{agent['id']}/versions/{version['id']}/{step}")
            assert r.status_code == 200, r.text
        r = self.post(
            f"/v1/agents/{agent['id']}/credentials", json={"scopes": ["decisions:create"]}
        )
        assert r.status_code == 201, r.text
        cred = r.json()
        agent["token"] = self.token(cred["client_id"], cred["client_secret"])
        return agent

    def token(self, client_id: str, secret: str) -> str:
        r = httpx.post(
            self.url + "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
            timeout=30,
            verify=self.tls,
        )
        assert r.status_code == 200, r.text
        value: str = r.json()["access_token"]
        return value

    def point(self, domain: str, name: str, kind: str = "opa") -> dict[str, Any]:
        r = self.post(f"/v1/domains/{domain}/enforcement-points", json={"name": name, "kind": kind})
        assert r.status_code == 201, r.text
        point: dict[str, Any] = r.json()
        return point

    def decide(self, token: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            self.url + "/v1/decisions",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            verify=self.tls,
        )


@dataclass
class Opa:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def decide(self, inp: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(self.url + "/v1/data/agents/authz/decision", json={"input": inp}, timeout=10)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def revision(self) -> str | None:
        r = httpx.get(self.url + "/v1/data/system/bundles", timeout=5)
        bundles = r.json().get("result") or {}
        for item in bundles.values():
            return str(item.get("manifest", {}).get("revision"))
        return None

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("OPA exited:\n" + self.log.read_text())
            try:
                if httpx.get(self.url + "/health?bundles", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("OPA did not activate a bundle:\n" + self.log.read_text()[-4000:])


def opa_config(plane: Plane, domain: str, point_name: str, secret: str, workdir: Path) -> Path:
    """The configuration ``agentctl enforcement-points config`` prints, with fast polling."""
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "control_plane",
            "enforcement-points",
            "config",
            point_name,
            "--domain",
            domain,
            "--url",
            plane.url,
        ],
        env={
            **os.environ,
            "AGENTCTL_TOKEN": ADMIN_TOKEN,
            "SSL_CERT_FILE": str(plane.ca),
            "PYTHONPATH": str(ROOT),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout.replace("${AGENTCTL_OPA_CLIENT_SECRET}", secret)
    text = text.replace("min_delay_seconds: 10", "min_delay_seconds: 1")
    text = text.replace("max_delay_seconds: 20", "max_delay_seconds: 2")
    path = workdir / f"opa-{point_name}.yaml"
    path.write_text(text)
    return path


@contextmanager
def start_plane(
    db_url: str, workdir: Path, port: int | None = None, **settings: str
) -> Iterator[Plane]:
    """``agentctl serve`` over TLS (its own CA in ``workdir``; ``settings``: more environment)
    until the block ends; fails the test when the server answered 500 or logged an unhandled
    exception."""
    ca = workdir / "ca.pem"
    if not ca.exists():
        make_tls(workdir)
    port = port or free_port()
    url = f"https://127.0.0.1:{port}"
    env = server_env(
        db_url, workdir, AGENTCTL_ADMIN_TOKEN=ADMIN_TOKEN, AGENTCTL_ISSUER=url, **settings
    )
    env["PYTHONPATH"] = str(ROOT)
    log = workdir / f"serve-{port}.log"
    import sys

    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "control_plane",
                "serve",
                "--port",
                str(port),
                "--ssl-certfile",
                str(workdir / "cert.pem"),
                "--ssl-keyfile",
                str(workdir / "key.pem"),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    plane = Plane(url, ca, process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(log.read_text())
            try:
                if httpx.get(url + "/readyz", timeout=1, verify=tls_context(ca)).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(log.read_text())
            time.sleep(0.2)
        yield plane
    finally:
        if process.poll() is None:
            process.terminate()
            # uvicorn finishes in-flight requests first: an OPA's long poll holds up to 30 s.
            process.wait(timeout=60)
    text = log.read_text()
    assert '" 500 ' not in text, text[-5000:]
    assert "Exception in ASGI application" not in text, text[-5000:]


@contextmanager
def start_opa(config: Path, workdir: Path, *, wait: bool = True) -> Iterator[Opa]:
    port = free_port()
    log = workdir / f"opa-{port}.log"
    argv = [
        opa_bin(),
        "run",
        "--server",
        "--addr",
        f"127.0.0.1:{port}",
        "--config-file",
        str(config),
        "--disable-telemetry",
        "--log-level",
        "debug",
    ]
    env = dict(os.environ, SSL_CERT_FILE=str(workdir / "ca.pem"))
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=out, cwd=workdir, env=env)
    opa = Opa(f"http://127.0.0.1:{port}", process, log)
    try:
        if wait:
            opa.wait_ready()
        yield opa
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def propagation_timeline(plane: Plane, opa: Opa, since: datetime) -> str:
    """What the server and OPA logged about bundles from ``since`` (UTC) on: the message of a
    failed propagation bound, so a slow run says where the time went (building, answering the
    long poll, OPA's download or activation)."""
    floor = since.replace(microsecond=0)
    server = []
    if plane.log is not None:
        for line in plane.log.read_text(errors="replace").splitlines():
            try:
                at = datetime.fromisoformat(line[:26]).replace(tzinfo=UTC)
            except ValueError:
                continue
            if at >= since and any(w in line for w in ("bundle", "revoke", "suspend", "error")):
                server.append(line[:220])
    edge = []
    for line in opa.log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
            at = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            continue
        if at >= floor and entry.get("msg") not in ("Received request.", "Sent response."):
            url = entry.get("url", "").partition("/v1/")[2]
            edge.append(f"{entry['time']} {entry.get('level')} {entry.get('msg')!s:.160} {url}")
    return "\n".join(["server:", *server[-40:], "OPA:", *edge[-40:]])

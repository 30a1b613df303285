"""A stock OPA refuses tampered bundles and keeps deciding on its last good one.

The good bundle comes from the control plane (an enforcement point's token); a small HTTP server
then plays a compromised bundle server to the same OPA (same signing key configuration), serving
one tampered variant at a time.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jws

from control_plane.crypto.jose import JWS_REGISTRY
from control_plane.crypto.signing import generate_signing_key
from control_plane.federation.bundle import archive, file_listing
from control_plane.federation.signing import ensure_key
from control_plane.kit.db import DatabaseTimeouts, create_engine, create_sessionmaker
from tests.federation.harness import opa_bin, start_plane
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.opa


class _Served:
    body: bytes = b""
    requests: int = 0


@contextmanager
def bundle_server(served: _Served) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(served.body)))
            self.end_headers()
            self.wfile.write(served.body)

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _files(raw: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        out = {}
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            assert handle is not None
            out[member.name.lstrip("/")] = handle.read()
        return out


def _sign(key: Any, kid: str, files: list[dict[str, str]]) -> bytes:
    payload = json.dumps({"files": files, "keyid": kid}).encode()
    token = jws.serialize_compact({"alg": "ES256", "kid": kid}, payload, key, registry=JWS_REGISTRY)
    return json.dumps({"signatures": [token]}).encode()


def _decide(url: str, token: str) -> dict[str, Any]:
    body = {
        "input": {
            "token": token,
            "action": "payments.refund",
            "resource": {"type": "order", "id": "o-1", "amount": 50, "region": "eu-west-1"},
        }
    }
    r = httpx.post(url + "/v1/data/agents/authz/decision", json=body, timeout=10)
    result: dict[str, Any] = r.json().get("result", {})
    return result


def _revision(url: str) -> str | None:
    r = httpx.get(url + "/v1/data/system/bundles/federation/manifest/revision", timeout=5)
    value = r.json().get("result")
    return str(value) if value is not None else None


def test_tampered_bundles_are_refused_and_the_last_good_one_kept(
    db_url: str, tmp_path: Path
) -> None:
    with start_plane(db_url, tmp_path) as plane:
        plane.domain("payments")
        agent = plane.agent("payments", "refund-bot")
        point = plane.point("payments", "payments-opa")
        cred = point["credential"]
        keys = plane.get("/v1/federation/keys").json()
        ((kid, pem),) = keys["pem"].items()
        token = plane.token(cred["client_id"], cred["client_secret"])
        good = plane.get("/v1/bundles/payments", headers={"Authorization": f"Bearer {token}"})
        assert good.status_code == 200, good.text

    # The private bundle key, read as the control plane reads it (for the "missing hash" case,
    # which needs a valid signature over an incomplete listing).
    async def bundle_key() -> Any:
        engine = create_engine(db_url, timeouts=DatabaseTimeouts(connect=30))
        try:
            async with create_sessionmaker(engine)() as session:
                kek = (tmp_path / "data" / "key-encryption-key").read_text().strip()
                return await ensure_key(session, kek)
        finally:
            await engine.dispose()

    real = asyncio.run(bundle_key())
    assert real.kid == kid
    files = _files(good.content)
    listing = file_listing({n: b for n, b in files.items() if n != ".signatures.json"})

    def variant(**changes: bytes) -> bytes:
        return archive({**files, **changes})

    flipped = bytearray(files["data.json"])
    flipped[flipped.index(b'"edge":true') + 8] ^= 0x01  # "edge":true -> "edge":trud
    sig = json.loads(files[".signatures.json"])["signatures"][0]
    head, payload, signature = sig.split(".")
    bad_sig = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    other = generate_signing_key("ES256")
    variants = {
        "one byte changed": variant(**{"data.json": bytes(flipped)}),
        "wrong signature": variant(
            **{
                ".signatures.json": json.dumps(
                    {"signatures": [f"{head}.{payload}.{bad_sig}"]}
                ).encode()
            }
        ),
        "missing file hash": variant(
            **{
                ".signatures.json": _sign(
                    real.private.jose_key, kid, [f for f in listing if f["name"] != "data.json"]
                )
            }
        ),
        "signed by another key": variant(
            **{".signatures.json": _sign(other.jose_key, kid, listing)}
        ),
    }

    served = _Served()
    served.body = good.content
    with bundle_server(served) as url:
        config = tmp_path / "tamper.yaml"
        config.write_text(
            f"""services:
  fake:
    url: {url}
keys:
  {kid}:
    algorithm: ES256
    key: |
{chr(10).join("      " + line for line in pem.strip().splitlines())}
bundles:
  federation:
    service: fake
    resource: bundle.tar.gz
    polling:
      min_delay_seconds: 1
      max_delay_seconds: 1
    signing:
      keyid: {kid}
"""
        )
        port = free_port()
        log = tmp_path / "opa-tamper.log"

        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    opa_bin(),
                    "run",
                    "--server",
                    "--addr",
                    f"127.0.0.1:{port}",
                    "--config-file",
                    str(config),
                    "--disable-telemetry",
                    "--log-level",
                    "error",
                ],
                stdout=out,
                stderr=out,
            )
        opa = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while _revision_or_none(opa) is None:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            good_revision = _revision(opa)
            assert _decide(opa, agent["token"])["effect"] == "allow"
            for name, body in variants.items():
                errors_before = log.read_text().count("Bundle load failed")
                served.body = body
                deadline = time.monotonic() + 15
                while log.read_text().count("Bundle load failed") < errors_before + 2:
                    assert time.monotonic() < deadline, f"{name}: OPA never refused it"
                    time.sleep(0.1)
                assert _revision(opa) == good_revision, name
                assert _decide(opa, agent["token"])["effect"] == "allow", name
                print(f"\n{name}: refused by OPA ({_last_error(log)})")
            served.body = good.content
        finally:
            process.terminate()
            process.wait(timeout=10)


def _revision_or_none(url: str) -> str | None:
    try:
        return _revision(url)
    except httpx.HTTPError:
        return None


def _last_error(log: Path) -> str:
    lines = [line for line in log.read_text().splitlines() if "Bundle load failed" in line]
    return json.loads(lines[-1]).get("msg", "")[:160] if lines else ""

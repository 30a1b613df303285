"""Browser-test plumbing: a real ``agentctl serve`` per module, Debian's Chromium driven by
Playwright (never a downloaded browser), axe-core from scripts/install-axe.sh, and the setup
made through the real API with a plain synchronous httpx client."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import shutil
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.console.support import BIG
from tests.fixtures.factories import digest

ADMIN_TOKEN = "acp_op_console-tests-admin-token-0123456789abcdef"
KEK = "console-tests-key-encryption-key-0123456789abcdefgh"
#: Chromium's flags on this kind of machine (closed network: no background connections).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = os.environ.get("CI", "").lower() == "true"


def _missing(what: str, how: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and no {what}: run {how}")
    pytest.skip(f"no {what} ({how} installs it)")


def chromium_path() -> str:
    found = os.environ.get("AGENTCTL_CHROMIUM_BIN") or shutil.which("chromium")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        _missing("chromium", "scripts/install-chromium.sh")
    assert found is not None
    return found


def axe_path() -> Path:
    env = os.environ.get("AGENTCTL_AXE_JS")
    default = (
        Path(os.environ.get("AGENTCTL_TOOLS_DIR", Path.home() / ".cache/agentctl/tools"))
        / "axe-core-4.11.0/node_modules/axe-core/axe.min.js"
    )
    path = Path(env) if env else default
    if not path.is_file():
        _missing("axe-core", "scripts/install-axe.sh")
    return path


def run_async(fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine from a synchronous test while Playwright's sync API holds the thread's
    event loop: in a thread of its own."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fn()).result()


class Api:
    """The control plane's API, as the platform admin, synchronously."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        self.secrets: list[str] = [ADMIN_TOKEN]

    def call(self, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
        kw.setdefault("headers", self.admin)
        r = self.http.request(method, path, **kw)
        assert r.status_code == expect, (path, r.status_code, r.text)
        return r.json() if r.content else None

    def operator(self, role: str, name: str, domains: list[str]) -> str:
        body = {"name": name, "role": role, "domains": domains}
        token: str = self.call("POST", "/v1/operators", 201, json=body)["token"]
        self.secrets.append(token)
        return token

    def decider(self, name: str, domain: str = "payments") -> dict[str, Any]:
        """An agent of ``domain`` (owner "o") with an active version and an access token."""
        r = self.http.post("/v1/domains", json={"name": domain}, headers=self.admin)
        assert r.status_code in (201, 409)
        agent = self.call(
            "POST",
            "/v1/agents",
            201,
            json={"name": name, "domain": domain, "owner": "o", "autonomy_level": 1},
        )
        version = self.call(
            "POST",
            f"/v1/agents/{agent['id']}/versions",
            201,
            json={
                "version": "1.0.0",
                "model_name": "gpt-test",
                "model_version": "2026-01",
                "artifact_digest": digest(name),
            },
        )
        for step in ("approve", "activate"):
            self.call("POST", f"/v1/agents/{agent['id']}/versions/{version['id']}/{step}")
        cred = self.call(
            "POST",
            f"/v1/agents/{agent['id']}/credentials",
            201,
            json={"scopes": ["decisions:create", "audit:write"]},
        )
        basic = base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}".encode()).decode()
        token = self.call(
            "POST",
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )["access_token"]
        self.secrets += [cred["client_secret"], token]
        return {"agent": agent, "headers": {"Authorization": f"Bearer {token}"}}

    def ask(self, me: dict[str, Any], **extra: Any) -> dict[str, Any]:
        body = json.loads(json.dumps(BIG))
        body.update(extra)
        answer: dict[str, Any] = self.call(
            "POST", "/v1/decisions", json=body, headers=me["headers"]
        )
        return answer

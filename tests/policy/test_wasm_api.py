"""The service on the wasm engine: the committed module decides without OPA, uploads compile.

Uploads are compiled by the pinned OPA (`opa build -t wasm`) before anything is stored; the
engine then runs the stored module. A builtin the wasm target lacks is refused by name (422).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.app import create_app
from control_plane.config import Settings
from tests.conftest import _bootstrap
from tests.fixtures.decisions import REFUND, decider

pytestmark = pytest.mark.opa

MAINTENANCE = {
    "modules": {
        "agents/authz.rego": (
            "package agents.authz\n\n"
            'decision := {"effect": "deny", "allow": false, '
            '"reasons": ["maintenance"], "obligations": []}\n'
        )
    },
    "data": {},
}


async def _client(settings: Settings, opa_bin: str | None) -> AsyncIterator[httpx.AsyncClient]:
    configured = settings.model_copy(update={"policy_engine": "wasm", "opa_bin": opa_bin})
    await _bootstrap(configured)
    app = create_app(configured)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.fixture
async def client(settings: Settings, opa_bin: str) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(settings, opa_bin):
        yield c


async def _revisions(client: httpx.AsyncClient, admin: dict[str, str]) -> list[int]:
    r = await client.get("/v1/policies/default/revisions", headers=admin)
    return [rev["revision"] for rev in r.json()["data"]]


async def _decide(client: httpx.AsyncClient, me: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/v1/decisions", json=REFUND, headers=me["headers"])
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_the_shipped_module_decides_without_an_opa_binary(
    settings: Settings, tmp_path: Path, admin: dict[str, str]
) -> None:
    async for client in _client(settings, str(tmp_path / "no-opa")):
        me = await decider(client, admin)
        body = await _decide(client, me)
        assert (body["effect"], body["engine"], body["revision"]) == ("allow", "wasm", 1)
        # Nothing can be validated (compiled) without OPA: uploads answer 503, decisions go on.
        r = await client.post("/v1/policies/default/revisions", json=MAINTENANCE, headers=admin)
        assert r.status_code == 503, r.text


async def test_an_uploaded_revision_is_compiled_and_decides(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin)
    r = await client.post("/v1/policies/default/revisions", json=MAINTENANCE, headers=admin)
    assert r.status_code == 201, r.text
    r = await client.post("/v1/policies/default/revisions/2/activate", headers=admin)
    assert r.status_code == 200, r.text
    body = await _decide(client, me)
    assert (body["effect"], body["reasons"], body["engine"], body["revision"]) == (
        "deny",
        ["maintenance"],
        "wasm",
        2,
    )


@pytest.mark.parametrize("builtin", ["sprintf", "time.now_ns", "io.jwt.decode"])
async def test_a_builtin_the_wasm_target_lacks_is_refused_by_name(
    client: httpx.AsyncClient, admin: dict[str, str], builtin: str
) -> None:
    call = {"sprintf": 'sprintf("%v", [input.x])', "time.now_ns": "time.now_ns()"}.get(
        builtin, f"{builtin}(input.x)"
    )
    body = {"modules": {"agents/authz.rego": f"package agents.authz\n\nx := {call}\n"}}
    r = await client.post("/v1/policies/default/revisions", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert f"builtin {builtin} is not supported" in r.json()["detail"]
    assert await _revisions(client, admin) == [1]


async def test_a_failed_wasm_build_is_refused_with_opas_message_and_stores_nothing(
    settings: Settings, opa_bin: str, tmp_path: Path, admin: dict[str, str]
) -> None:
    # Every Rego that passes `opa check` compiled for the wasm target when tried, so OPA's
    # failure is made here: this OPA is the real one except that `build` fails as OPA does.
    wrapper = tmp_path / "opa"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = build ]; then\n'
        '  echo "error: wasm compile: injected failure for the test" >&2; exit 1\n'
        "fi\n"
        f'exec {opa_bin} "$@"\n'
    )
    wrapper.chmod(0o755)
    assert os.access(wrapper, os.X_OK)
    async for client in _client(settings, str(wrapper)):
        r = await client.post("/v1/policies/default/revisions", json=MAINTENANCE, headers=admin)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "error: wasm compile: injected failure for the test" in detail
        assert "wasm_build_error" in str(r.json()["errors"])
        assert await _revisions(client, admin) == [1]

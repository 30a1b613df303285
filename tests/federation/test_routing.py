"""A percentage canary in the domain bundle (``federation.routing``), through HTTP (ASGI) and
with the real OPA: both revisions namespaced beside a router, the canary's agents as data, an
active-only bundle again after a rollback, and a revision that cannot be namespaced safely
refused (the edge keeps the active revision alone)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.federation import bundle, routing
from control_plane.policy.canary import on_canary
from tests.canary.helpers import BUNDLE, push_deny_all
from tests.federation.harness import opa_bin
from tests.federation.test_api import _files, _point, _point_token
from tests.fixtures.factories import create_agent

pytestmark = pytest.mark.opa

SHIPPED = Path(__file__).parents[2] / "policies"


def _route(canary_modules: dict[str, str], canary_data: dict[str, Any]) -> routing.RoutedPolicy:
    active = {"agents/authz.rego": (SHIPPED / "agents/authz.rego").read_text()}
    data = json.loads((SHIPPED / "data.json").read_text())
    return routing.compile_routed(
        {"active": (active, data), "canary": (canary_modules, canary_data)},
        edge_module=bundle.edge_module(),
        edge_module_path=bundle.EDGE_MODULE_PATH,
        entrypoint=bundle.WASM_ENTRYPOINT,
        opa_bin=None,
    )


def test_packages_and_data_references_move_under_the_namespace() -> None:
    source = (
        "package agents.authz\n\n"
        "import data.helpers.limits as lim\n\n"
        'cfg := data["authz"]\n\n'
        "edge if data.federation.edge == true\n\n"
        "big(x) := data.helpers.limits.big(x)\n\n"
        "ok if { lim.max > 1 } # data.authz in a comment stays\n\n"
        "t := 1 if { cfg.a with data.authz.a as 2 }\n\n"
        'labels := {"région €": data.authz.b}  # OPA counts columns in characters\n\n'
        'decision := {"effect": "allow", "allow": true, "reasons": [], "obligations": []}\n'
    )
    helpers = "package helpers.limits\n\nmax := 2\n\nbig(x) := x > max\n"
    routed = _route({"agents/authz.rego": source, "helpers/limits.rego": helpers}, {"authz": {}})
    moved = routed.modules["federation/revisions/canary/agents/authz.rego"]
    assert moved.startswith("package federation.revisions.canary.agents.authz\n")
    assert "import data.federation.revisions.canary.helpers.limits as lim" in moved
    assert 'cfg := data.federation.revisions.canary["authz"]' in moved
    assert "edge if data.federation.edge == true" in moved  # the bundle server's: shared
    assert "big(x) := data.federation.revisions.canary.helpers.limits.big(x)" in moved
    assert "# data.authz in a comment stays" in moved
    assert "with data.federation.revisions.canary.authz.a as 2" in moved
    assert '{"région €": data.federation.revisions.canary.authz.b}' in moved
    assert routed.modules["federation/revisions/canary/helpers/limits.rego"].startswith(
        "package federation.revisions.canary.helpers.limits\n"
    )
    assert routed.modules[routing.ROUTER_PATH] == routing.ROUTER
    assert routed.wasm is not None
    assert routed.wasm[:4] == b"\0asm"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("everything := data\n", "data as a whole"),
        ('pick := data[k] if k := "authz"\n', "dynamic first key"),
    ],
)
def test_a_revision_that_could_reach_outside_its_namespace_is_refused(text: str, why: str) -> None:
    module = 'package agents.authz\n\ndecision := {"effect": "allow"}\n\n' + text
    with pytest.raises(routing.Unroutable, match=why):
        _route({"agents/authz.rego": module}, {})


def test_a_package_under_the_bundle_servers_root_is_refused() -> None:
    with pytest.raises(routing.Unroutable, match="belongs to the bundle server"):
        _route({"x.rego": "package federation.mine\n\np := 1\n"}, {})


def test_the_routed_bundle_decides_per_agent_in_opa(tmp_path: Path) -> None:
    """The router at OPA itself (``opa eval`` over the routed bundle, SDK-style input)."""
    deny = (
        "package agents.authz\n\n"
        'decision := {"effect": "deny", "allow": false, "reasons": ["maintenance"], '
        '"obligations": []}\n'
    )
    routed = _route({"agents/authz.rego": deny}, {})
    for name, text in {**routed.modules, bundle.EDGE_MODULE_PATH: bundle.edge_module()}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    active_data = json.loads((SHIPPED / "data.json").read_text())
    fed = {"revisions": {"active": active_data, "canary": {}}, "canary": {"agents": {"a1": True}}}
    (tmp_path / "data.json").write_text(json.dumps({"federation": fed}))
    for agent_id, canary in (("a1", True), ("a2", False)):
        agent = {"id": agent_id, "domain": "payments", "name": "x", "status": "active"}
        inp = {"agent": agent, "action": "payments.invoice.read", "resource": {}}
        out = subprocess.run(
            [
                opa_bin(),
                "eval",
                "-b",
                str(tmp_path),
                "-I",
                "-f",
                "json",
                "data.agents.authz.decision",
            ],
            input=json.dumps(inp),
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout)["result"][0]["expressions"][0]["value"]
        assert (result["reasons"] == ["maintenance"]) is canary


async def _bundle(client: httpx.AsyncClient, token: dict[str, str]) -> dict[str, bytes]:
    r = await client.get("/v1/bundles/payments", headers=token)
    assert r.status_code == 200, r.text
    return _files(r.content)


async def test_a_share_canary_is_routed_in_the_domain_bundle_and_rolled_back(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    point = await _point(client, admin, "payments")
    token = await _point_token(client, point)
    ids = [(await create_agent(client, admin, "payments"))["id"] for _ in range(40)]
    before = await _bundle(client, token)
    canary = await push_deny_all(client, admin)
    r = await client.put(
        f"{BUNDLE}/canary", json={"revision": canary, "percent": 10}, headers=admin
    )
    assert r.status_code == 200, r.text
    expected = {i for i in ids if on_canary("default", i, "payments", 1000, ())}

    files = await _bundle(client, token)
    data = json.loads(files["data.json"])
    manifest = json.loads(files[".manifest"])
    if expected:
        assert set(data["federation"]["canary"]["agents"]) == expected
        assert data["federation"]["canary"]["revision"] == canary
        assert set(data) == {"federation"}  # each revision's data sits in its namespace
        assert data["federation"]["revisions"]["active"]["authz"]["actions"]
        assert manifest["roots"] == ["agents", "federation"]
        assert manifest["metadata"]["canary"]["revision"] == canary
        assert manifest["metadata"]["policy"]["revision"] == 1
        assert files[routing.ROUTER_PATH].decode() == routing.ROUTER
        assert "federation/revisions/canary/agents/authz.rego" in files
        assert not [n for n in files if n.endswith("_test.rego")]
    else:  # no agent of the domain drew a bucket under 10%: nothing to route
        assert routing.ROUTER_PATH not in files

    r = await client.post(f"{BUNDLE}/canary/rollback", headers=admin)
    assert r.status_code == 200, r.text
    after = await _bundle(client, token)
    assert routing.ROUTER_PATH not in after
    assert "canary" not in json.loads(after[".manifest"])["metadata"]
    assert "canary" not in json.loads(after["data.json"])["federation"]
    assert after["agents/authz.rego"] == before["agents/authz.rego"]


async def test_an_unroutable_canary_leaves_the_edge_on_the_active_revision(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    point = await _point(client, admin, "payments")
    token = await _point_token(client, point)
    for _ in range(20):
        await create_agent(client, admin, "payments")
    # Valid Rego that cannot be moved: its package is under the bundle server's root, which
    # no reference would follow into the namespace.
    modules = {
        "agents/authz.rego": (
            "package agents.authz\n\n"
            'decision := {"effect": "deny", "allow": false, "reasons": ["maintenance"], '
            '"obligations": []}\n'
        ),
        "mine.rego": "package federation.mine\n\np := 1\n",
    }
    r = await client.post(
        f"{BUNDLE}/revisions",
        json={"modules": modules, "data": {}},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    r = await client.put(
        f"{BUNDLE}/canary", json={"revision": r.json()["revision"], "percent": 100}, headers=admin
    )
    assert r.status_code == 200, r.text
    files = await _bundle(client, token)
    assert routing.ROUTER_PATH not in files
    assert json.loads(files[".manifest"])["metadata"]["policy"]["revision"] == 1
    assert b"maintenance" not in files["agents/authz.rego"]

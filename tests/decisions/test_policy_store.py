"""Policy bundles over HTTP: validated immutable revisions, activation and rollback."""

from __future__ import annotations

import asyncio
import gzip
import io
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from control_plane.policy.bundles import read_policy_dir, write_bundle_archive
from control_plane.policy.service import content_digest
from control_plane.state import app_state
from tests.fixtures.decisions import REFUND, decider
from tests.fixtures.factories import create_operator

POLICIES = Path(__file__).parent.parent.parent / "policies"


def _shipped() -> dict[str, Any]:
    source = read_policy_dir(POLICIES)
    return {"modules": source.modules, "data": source.data}


def _deny_all() -> dict[str, Any]:
    """A valid policy under the same decision path that denies everything."""
    return {
        "modules": {
            "agents/authz.rego": (
                "package agents.authz\n\n"
                'decision := {"effect": "deny", "allow": false, '
                '"reasons": ["maintenance"], "obligations": []}\n'
            )
        },
        "data": {},
    }


async def _revisions(client: httpx.AsyncClient, admin: dict[str, str]) -> list[int]:
    r = await client.get("/v1/policies/default/revisions", headers=admin)
    return [rev["revision"] for rev in r.json()["data"]]


async def test_activation_and_rollback_show_in_the_next_decision(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    me = await decider(client, admin)
    first = (await client.post("/v1/decisions", json=REFUND, headers=me["headers"])).json()
    assert (first["effect"], first["revision"]) == ("allow", 1)

    r = await client.post("/v1/policies/default/revisions", json=_deny_all(), headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["revision"] == 2
    assert created["active"] is False
    assert created["digest"].startswith("sha256:")
    assert r.headers["location"] == "/v1/policies/default/revisions/2"
    # Stored but not active: decisions still use revision 1.
    assert (await client.post("/v1/decisions", json=REFUND, headers=me["headers"])).json()[
        "revision"
    ] == 1

    r = await client.post("/v1/policies/default/revisions/2/activate", headers=admin)
    assert r.json()["active"] is True
    after = (await client.post("/v1/decisions", json=REFUND, headers=me["headers"])).json()
    assert (after["effect"], after["reasons"], after["revision"]) == ("deny", ["maintenance"], 2)

    await client.post("/v1/policies/default/revisions/1/activate", headers=admin)
    rolled = (await client.post("/v1/decisions", json=REFUND, headers=me["headers"])).json()
    assert (rolled["effect"], rolled["revision"]) == ("allow", 1)

    listed = (await client.get("/v1/policies/default/revisions", headers=admin)).json()["data"]
    assert [(r["revision"], r["active"]) for r in listed] == [(2, False), (1, True)]
    full = (await client.get("/v1/policies/default/revisions/2", headers=admin)).json()
    assert full["sources"] == _deny_all()["modules"]
    bundles = (await client.get("/v1/policies", headers=admin)).json()["data"]
    assert bundles[0]["name"] == "default"
    assert bundles[0]["active_revision"] == 1


async def test_same_content_gives_the_same_digest(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    shipped = _shipped()
    a = (await client.post("/v1/policies/other/revisions", json=shipped, headers=admin)).json()
    b = (await client.post("/v1/policies/other/revisions", json=shipped, headers=admin)).json()
    assert a["digest"] == b["digest"]
    assert (a["revision"], b["revision"]) == (1, 2)
    default = (await client.get("/v1/policies/default/revisions/1", headers=admin)).json()
    assert default["digest"] == a["digest"]


# (name, source, lines an engine may truthfully point at)
INVALID: list[tuple[str, str, set[int]]] = [
    ("v0_rule_without_if", "package agents.authz\n\nallow {\n\tinput.x == 1\n}\n", {3}),
    (
        "v0_partial_set",
        'package agents.authz\n\ndeny[msg] {\n\tmsg := "no"\n}\n',
        {3},
    ),
    ("unsafe_variable", "package agents.authz\n\nallow if {\n\tx == 1\n}\n", {4}),
    (
        "unknown_function",
        "package agents.authz\n\nallow if {\n\tnot_a_builtin(input.x)\n}\n",
        {4},
    ),
    # OPA points at the end of input.
    ("parse_error", "package agents.authz\n\nallow if {\n\tinput.x ==\n", {5}),
    ("conflicting_complete_rules", "package agents.authz\n\nx := 1\n\nx := 2\n", {3, 5}),
]


@pytest.fixture
def validation(app: FastAPI, opa_bin: str) -> str:
    """Validate uploads with the pinned OPA binary (the one authority on Rego)."""
    app_state(app).settings = app_state(app).settings.model_copy(update={"opa_bin": opa_bin})
    return opa_bin


@pytest.mark.parametrize(("name", "source", "lines"), INVALID, ids=[c[0] for c in INVALID])
async def test_invalid_policy_is_422_with_file_and_line(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    validation: str,
    name: str,
    source: str,
    lines: set[int],
) -> None:
    body = {"modules": {"agents/bad.rego": source}, "data": {}}
    r = await client.post("/v1/policies/default/revisions", json=body, headers=admin)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "validation_failed"
    assert "agents/bad.rego:" in problem["detail"], problem
    located = [e["detail"] for e in problem["errors"] if e["detail"].startswith("agents/bad.rego:")]
    assert located, problem
    reported = {int(d.split(":")[1]) for d in located if d.split(":")[1].isdigit()}
    assert reported & lines, (validation, problem)
    assert await _revisions(client, admin) == [1]


async def test_tar_gz_upload(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    archive = write_bundle_archive(read_policy_dir(POLICIES))
    r = await client.post(
        "/v1/policies/default/revisions",
        content=archive,
        headers=admin | {"Content-Type": "application/gzip"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["modules"] == ["agents/authz.rego", "agents/authz_test.rego"]
    shipped = (await client.get("/v1/policies/default/revisions/1", headers=admin)).json()
    assert r.json()["digest"] == shipped["digest"]


def _tar(members: dict[str, bytes], *, link: str | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        if link:
            info = tarfile.TarInfo("evil.rego")
            info.type = tarfile.SYMTYPE
            info.linkname = link
            tar.addfile(info)
    # mtime=0: the same bytes at every collection (pytest-xdist workers must agree on test ids).
    return gzip.compress(out.getvalue(), mtime=0)


@pytest.mark.parametrize(
    "raw",
    [
        b"not a tarball",
        _tar({"../escape.rego": b"package x\n"}),
        _tar({"/abs.rego": b"package x\n"}),
        _tar({"a.rego": b"package x\n"}, link="/etc/passwd"),
        _tar({"README.md": b"hi"}),
        _tar({"data.json": b"{}"}),
        _tar({"data.json": b"{not json", "a.rego": b"package a\n"}),
        _tar({"a.rego": b"\xff\xfe"}),
    ],
)
async def test_bad_archives_are_422(
    client: httpx.AsyncClient, admin: dict[str, str], raw: bytes
) -> None:
    r = await client.post(
        "/v1/policies/default/revisions",
        content=raw,
        headers=admin | {"Content-Type": "application/gzip"},
    )
    assert r.status_code == 422, r.text
    assert await _revisions(client, admin) == [1]


async def test_upload_errors_and_permissions(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    url = "/v1/policies/default/revisions"
    r = await client.post(url, content=b"x", headers=admin | {"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = await client.post(url, json={"modules": {}}, headers=admin)
    assert r.status_code == 422
    r = await client.post(url, json={"modules": {"a.rego": 5}}, headers=admin)
    assert r.status_code == 422
    assert r.json()["errors"][0]["pointer"].startswith("/body/modules")
    r = await client.post(url, json={**_deny_all(), "extra": 1}, headers=admin)
    assert r.status_code == 422
    r = await client.post(url, content=b"{", headers=admin | {"Content-Type": "application/json"})
    assert r.status_code == 422
    assert (
        await client.post("/v1/policies/default/revisions/9/activate", headers=admin)
    ).status_code == 404
    assert (await client.get("/v1/policies/nope/revisions", headers=admin)).status_code == 404
    await client.post("/v1/domains", json={"name": "payments"}, headers=admin)
    domain_admin = await create_operator(client, admin, "domain_admin", ["payments"])
    auditor = await create_operator(client, admin, "auditor")
    assert (await client.post(url, json=_deny_all(), headers=domain_admin)).status_code == 403
    assert (await client.post(url, json=_deny_all(), headers=auditor)).status_code == 403
    assert (await client.get(url, headers=auditor)).status_code == 200
    r = await client.post("/v1/policies/default/revisions/1/activate", headers=auditor)
    assert r.status_code == 403
    assert await _revisions(client, admin) == [1]


async def test_uploads_cannot_reach_the_network_or_the_environment(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    validation: str,
    key_server: Any,
) -> None:
    """Validation evaluates uploaded policy; it must never fetch a URL or read the host's
    environment (AGENTCTL_* secrets) on the uploader's behalf."""
    sources = {
        "http_send": (
            "package agents.authz\n\nx := http.send("
            f'{{"method": "get", "url": "{key_server.url}/leak"}})\n'
        ),
        "opa_runtime": "package agents.authz\n\nx := opa.runtime().env\n",
    }
    for source in sources.values():
        body = {"modules": {"agents/evil.rego": source}, "data": {}}
        r = await client.post("/v1/policies/default/revisions", json=body, headers=admin)
        assert r.status_code == 422, r.text
        assert "agents/evil.rego:3" in r.json()["detail"]
    assert key_server.requests == []
    assert await _revisions(client, admin) == [1]


async def test_without_opa_an_upload_is_503_and_decisions_go_on(
    client: httpx.AsyncClient, app: FastAPI, admin: dict[str, str], tmp_path: Path
) -> None:
    app_state(app).settings = app_state(app).settings.model_copy(
        update={"opa_bin": str(tmp_path / "opa")}
    )
    r = await client.post("/v1/policies/default/revisions", json=_deny_all(), headers=admin)
    assert r.status_code == 503, r.text
    problem = r.json()
    assert problem["code"] == "service_unavailable"
    assert "make opa" in problem["detail"]
    assert "scripts/install-opa.sh" in problem["detail"]
    assert await _revisions(client, admin) == [1]
    me = await decider(client, admin)
    decided = (await client.post("/v1/decisions", json=REFUND, headers=me["headers"])).json()
    assert (decided["effect"], decided["revision"]) == ("allow", 1)


async def test_data_that_cannot_be_stored_exactly_is_422_naming_the_path(
    client: httpx.AsyncClient, admin: dict[str, str], validation: str
) -> None:
    body = {**_deny_all(), "data": {"b": {"x\u0000": 1, "x\ufffd": 2}}}
    r = await client.post("/v1/policies/default/revisions", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert '"/b/x\\u0000"' in r.json()["detail"]
    assert r.json()["errors"][0]["pointer"] == "/body/data"
    assert await _revisions(client, admin) == [1]


async def test_stored_content_has_the_reported_digest(
    client: httpx.AsyncClient, admin: dict[str, str], validation: str
) -> None:
    data = {
        "b": {"x\ufffd": 2, "x": 1, "\u2028": "\U0001f600", "e": "caf\u00e9"},
        "n": [1.5, -0.0, 1e20],
    }
    body = {**_deny_all(), "data": data}
    r = await client.post("/v1/policies/default/revisions", json=body, headers=admin)
    assert r.status_code == 201, r.text
    stored = (await client.get("/v1/policies/default/revisions/2", headers=admin)).json()
    assert stored["data"] == data
    assert stored["data"]["n"][1:] == [0.0, 10**20]  # as PostgreSQL's numeric answers them
    assert content_digest(stored["sources"], stored["data"]) == r.json()["digest"]
    assert stored["digest"] == r.json()["digest"]


async def test_data_where_a_rule_lives_is_refused_by_opas_rule(
    client: httpx.AsyncClient, admin: dict[str, str], validation: str
) -> None:
    body = {
        "modules": {"agents/authz.rego": "package agents.authz\n\nallow := true\n"},
        "data": {"agents": 5},
    }
    r = await client.post("/v1/policies/default/revisions", json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("The policy was rejected: agents/authz.rego:3:")
    assert "conflicting rule for data path agents/authz/allow" in r.json()["detail"]
    assert await _revisions(client, admin) == [1]


async def test_data_beside_a_packages_rules_is_accepted_and_decides(
    client: httpx.AsyncClient, admin: dict[str, str], validation: str
) -> None:
    shipped = _shipped()
    body = {**shipped, "data": {**shipped["data"], "agents": {"authz": {"x": 1}}}}
    r = await client.post("/v1/policies/default/revisions", json=body, headers=admin)
    assert r.status_code == 201, r.text
    r = await client.post("/v1/policies/default/revisions/2/activate", headers=admin)
    assert r.status_code == 200, r.text
    me = await decider(client, admin)
    decided = (await client.post("/v1/decisions", json=REFUND, headers=me["headers"])).json()
    assert (decided["effect"], decided["revision"]) == ("allow", 2)


async def test_writes_do_not_wait_for_an_upload_being_validated(
    client: httpx.AsyncClient, admin: dict[str, str], validation: str
) -> None:
    """Validation runs before the upload's transaction and outside SQLite's writer turn."""

    async def create_domain(name: str) -> float:
        started = time.perf_counter()
        r = await client.post("/v1/domains", json={"name": name}, headers=admin)
        assert r.status_code == 201, r.text
        return time.perf_counter() - started

    alone = min([await create_domain(f"alone-{i}") for i in range(3)])

    async def upload() -> float:
        started = time.perf_counter()
        r = await client.post("/v1/policies/default/revisions", json=_shipped(), headers=admin)
        assert r.status_code == 201, r.text
        return time.perf_counter() - started

    uploading = asyncio.create_task(upload())
    await asyncio.sleep(0.05)  # the upload is authenticated and being validated by now
    during = await create_domain("during")
    upload_seconds = await uploading
    print(
        f"domain create alone {alone * 1000:.0f} ms, during an upload {during * 1000:.0f} ms; "
        f"upload {upload_seconds * 1000:.0f} ms"
    )
    assert during < upload_seconds / 2


@pytest.mark.parametrize("builtin", ["time.weekday", "net.cidr_expand"])
async def test_builtin_the_wasm_engine_lacks_is_refused_by_name(
    client: httpx.AsyncClient, admin: dict[str, str], validation: str, builtin: str
) -> None:
    call = f"{builtin}(input.x)"
    body = {"modules": {"agents/authz.rego": f"package agents.authz\n\nx := {call}\n"}}
    r = await client.post("/v1/policies/default/revisions", json=body, headers=admin)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("The policy was rejected: agents/authz.rego:3:"), detail
    assert f"builtin {builtin} is not supported" in detail
    assert await _revisions(client, admin) == [1]

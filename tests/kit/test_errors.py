"""Bad input of every kind answers 4xx problem+json, never 500, and writes nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from tests.fixtures.factories import create_agent, create_domain

AGENT = {"name": "bot", "domain": "payments", "owner": "o"}


def _assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:agentctl:problem:")
    assert body["code"]
    assert body["title"]
    return body


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({**AGENT, "autonomy_level": "3"}, "/body/autonomy_level"),
        ({**AGENT, "autonomy_level": 1.5}, "/body/autonomy_level"),
        ({**AGENT, "autonomy_level": True}, "/body/autonomy_level"),
        ({**AGENT, "autonomy_level": 4}, "/body/autonomy_level"),
        ({**AGENT, "name": 5}, "/body/name"),
        ({**AGENT, "name": "Not A Name"}, "/body/name"),
        ({**AGENT, "labels": ["a"]}, "/body/labels"),
        ({**AGENT, "labels": {"k": 1}}, "/body/labels/k"),
        ({**AGENT, "surprise": 1}, "/body/surprise"),
        ({**AGENT, "owner": "nul\x00byte"}, "/body"),
        ({**AGENT, "labels": {"k": "nul\x00"}}, "/body/labels/k"),
        ({"domain": "payments", "owner": "o"}, "/body/name"),
        ([AGENT], "/body"),
        ("just a string", "/body"),
    ],
)
async def test_invalid_agent_bodies(
    client: httpx.AsyncClient, admin: dict[str, str], body: Any, pointer: str
) -> None:
    await create_domain(client, admin, "payments")
    r = await client.post("/v1/agents", json=body, headers=admin)
    problem = _assert_problem(r, 422)
    assert problem["code"] == "validation_failed"
    assert pointer in [e["pointer"] for e in problem["errors"]], problem
    assert (await client.get("/v1/agents", headers=admin)).json()["data"] == []


async def test_unknown_field_message(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.post("/v1/domains", json={"name": "x", "nmae": "y"}, headers=admin)
    problem = _assert_problem(r, 422)
    assert {"pointer": "/body/nmae", "detail": "unknown field"} in problem["errors"]


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"name": "x",}', b"\xff\xfe", b"null", b"", b'{"name": "x"} trailing', b"[" * 5000],
)
async def test_malformed_json(client: httpx.AsyncClient, admin: dict[str, str], raw: bytes) -> None:
    r = await client.post(
        "/v1/domains", content=raw, headers=admin | {"Content-Type": "application/json"}
    )
    # 422 for JSON that does not parse; 400 when the parser gives up (nesting too deep).
    _assert_problem(r, 400 if raw.startswith(b"[[[") else 422)


async def test_invalid_enum_and_ids(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await create_domain(client, admin, "payments")
    agent = await create_agent(client, admin, "payments")
    _assert_problem(
        await client.get("/v1/agents", params={"status": "sleeping"}, headers=admin), 422
    )
    _assert_problem(await client.get("/v1/agents", params={"limit": 0}, headers=admin), 422)
    _assert_problem(await client.get("/v1/agents", params={"limit": "x"}, headers=admin), 422)
    _assert_problem(
        await client.get("/v1/agents", params={"after": "1 or 1=1"}, headers=admin), 422
    )
    _assert_problem(await client.get("/v1/agents", params={"label": "nolabel"}, headers=admin), 422)
    for bad in ("not-a-uuid", "1", "' OR 1=1 --", "%2e%2e"):
        _assert_problem(await client.get(f"/v1/agents/{bad}", headers=admin), 422)
    _assert_problem(await client.get("/v1/agents/%00", headers=admin), 400)
    # A path that escapes the route matches no route at all.
    _assert_problem(await client.get("/v1/agents/..%2F..%2Fetc", headers=admin), 404)
    _assert_problem(
        await client.post("/v1/operators", json={"name": "n", "role": "superuser"}, headers=admin),
        422,
    )
    _assert_problem(
        await client.post(f"/v1/agents/{agent['id']}/versions/xyz/approve", headers=admin), 422
    )
    _assert_problem(
        await client.post(
            f"/v1/agents/{agent['id']}/versions",
            json={
                "version": "v1",
                "model_name": "m",
                "model_version": "1",
                "artifact_digest": "md5:abc",
            },
            headers=admin,
        ),
        422,
    )
    missing = "01a20000-0000-7000-8000-000000000000"
    _assert_problem(await client.get(f"/v1/agents/{missing}", headers=admin), 404)


async def test_unknown_route_and_method(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    _assert_problem(await client.get("/v1/nothing-here", headers=admin), 404)
    _assert_problem(await client.delete("/v1/agents", headers=admin), 405)


async def test_body_over_one_mebibyte(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    big = json.dumps({"name": "x", "description": "a" * (1024 * 1024)}).encode()
    r = await client.post(
        "/v1/domains", content=big, headers=admin | {"Content-Type": "application/json"}
    )
    problem = _assert_problem(r, 413)
    assert problem["code"] == "payload_too_large"

    async def chunks() -> Any:  # no Content-Length: the limit holds while streaming too
        for _ in range(20):
            yield b"a" * (100 * 1024)

    r = await client.post(
        "/v1/domains", content=chunks(), headers=admin | {"Content-Type": "application/json"}
    )
    _assert_problem(r, 413)
    assert (await client.get("/v1/domains", headers=admin)).json()["data"] == []


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces"


@pytest.mark.parametrize(
    "url",
    [
        "/v1/agents?label=a=%00",
        "/v1/domains?after=%00",
        "/v1/policies?after=x%00y",
        "/v1/decisions?action=%00",
        "/v1/decisions?since=9999-12-31T23:59:59-05:00",
        "/v1/decisions?until=0001-01-01T00:00:00%2B05:00",
        "/v1/policies/default/revisions?after=2147483648",
    ],
)
async def test_odd_query_values_are_4xx(
    client: httpx.AsyncClient, admin: dict[str, str], url: str
) -> None:
    r = await client.get(url, headers=admin)
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"] == "application/problem+json"


async def test_unsupported_media_type_has_its_own_code(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.post(
        "/v1/policies/default/revisions",
        content=b"package x",
        headers={**admin, "Content-Type": "text/plain"},
    )
    body = _assert_problem(r, 415)
    assert body["code"] == "unsupported_media_type"
    assert body["type"] == "urn:agentctl:problem:unsupported_media_type"


@pytest.mark.allow_500
async def test_a_500_names_its_request_in_the_answer_and_the_log(
    app: FastAPI, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unexpected exception is answered by Starlette's outermost middleware, outside the one
    that binds the request id: the answer and the log line carry it all the same."""
    router = APIRouter()

    @router.get("/test-only/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    app.include_router(router)
    r = await client.get("/test-only/boom", headers={"X-Request-ID": "req-boom-1"})
    body = _assert_problem(r, 500)
    assert body["code"] == "internal_error"
    assert body["request_id"] == "req-boom-1"
    assert r.headers.get_list("x-request-id") == ["req-boom-1"]
    logged = [line for line in capsys.readouterr().out.splitlines() if "unhandled_error" in line]
    assert logged
    assert all("req-boom-1" in line for line in logged)


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"name": "\xff"}', "The request body is not JSON text (UTF-8, UTF-16 or UTF-32)."),
        (b"[" * 5000 + b"]" * 5000, "The request body is nested too deeply to read."),
    ],
)
async def test_a_body_json_cannot_read_is_a_400_that_says_why(
    client: httpx.AsyncClient, admin: dict[str, str], raw: bytes, detail: str
) -> None:
    r = await client.post(
        "/v1/domains", content=raw, headers={**admin, "Content-Type": "application/json"}
    )
    assert _assert_problem(r, 400)["detail"] == detail
    assert (await client.get("/v1/domains", headers=admin)).json()["data"] == []

"""Issue 8 faults 18-19: the committed document describes exactly what the server does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from tests.fixtures.factories import create_agent, create_domain
from tests.test_openapi import COMMITTED

SPEC: dict[str, Any] = json.loads(COMMITTED.read_text())


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_reference_resolves() -> None:
    refs = set(_refs(SPEC))
    assert "#/components/schemas/RevisionCreate" in refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in SPEC["components"]["schemas"], ref


def test_policy_upload_is_json_or_a_binary_gzip_body() -> None:
    body = SPEC["paths"]["/v1/policies/{bundle}/revisions"]["post"]["requestBody"]["content"]
    assert body["application/gzip"]["schema"] == {"type": "string", "format": "binary"}


def test_patch_fields_are_not_nullable_and_the_server_agrees() -> None:
    update = SPEC["components"]["schemas"]["AgentUpdate"]["properties"]
    for name in ("owner", "description", "autonomy_level", "labels"):
        assert "null" not in json.dumps(update[name]), name


async def test_null_in_a_patch_is_refused(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await create_domain(client, admin, "payments")
    agent = await create_agent(client, admin, "payments")
    for name in ("owner", "description", "autonomy_level", "labels"):
        r = await client.patch(
            f"/v1/agents/{agent['id']}", json={name: None}, headers={**admin, "If-Match": '"1"'}
        )
        assert r.status_code == 422, (name, r.text)


def test_if_match_is_required_exactly_where_428_is_declared() -> None:
    for path, method, operation in _operations():
        params = {p["name"]: p for p in operation.get("parameters", [])}
        if "428" in operation["responses"]:
            assert params["If-Match"]["required"] is True, (path, method)
        elif "If-Match" in params:
            assert params["If-Match"]["required"] is False, (path, method)
            assert "428" not in operation["responses"]


def test_edge_statuses_are_declared_everywhere() -> None:
    for path, method, operation in _operations():
        for status in ("400", "413", "503"):
            assert status in operation["responses"], (path, method, status)
        assert "422" not in operation["responses"] or (
            operation["responses"]["422"]["content"].keys() == {"application/problem+json"}
        )


def test_oauth_endpoints_document_their_errors_and_client_auth() -> None:
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["ClientSecretBasic"] == {**schemes["ClientSecretBasic"], "scheme": "basic"}
    for path in ("/oauth/token", "/oauth/revoke"):
        operation = SPEC["paths"][path]["post"]
        assert "422" not in operation["responses"], path
        assert operation["security"] == [{"ClientSecretBasic": []}, {}]
        for status in ("400", "401"):
            content = operation["responses"][status]["content"]
            assert content == {
                "application/json": {"schema": {"$ref": "#/components/schemas/OAuthErrorBody"}}
            }
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    assert "HTTPValidationError" not in SPEC["components"]["schemas"]


def test_response_headers_are_declared() -> None:
    paths = SPEC["paths"]
    assert "ETag" in paths["/v1/agents/{agent_id}"]["get"]["responses"]["200"]["headers"]
    assert "ETag" in paths["/v1/agents/{agent_id}"]["patch"]["responses"]["200"]["headers"]
    assert "Location" in paths["/v1/agents"]["post"]["responses"]["201"]["headers"]
    assert "Retry-After" in paths["/v1/agents"]["post"]["responses"]["503"]["headers"]


def test_cursors_have_the_type_of_after() -> None:
    schemas = SPEC["components"]["schemas"]
    for list_model, after_path in (
        ("AgentList", "/v1/agents"),
        ("RevisionList", "/v1/policies/{bundle}/revisions"),
        ("DecisionList", "/v1/decisions"),
    ):
        after = next(
            p for p in SPEC["paths"][after_path]["get"]["parameters"] if p["name"] == "after"
        )
        next_after = schemas[list_model]["properties"]["next_after"]
        kinds = [s for s in next_after["anyOf"] if s != {"type": "null"}]
        assert kinds == [{k: v for k, v in after["schema"].items() if k in ("type", "format")}], (
            list_model,
            kinds,
            after["schema"],
        )


def test_typed_oauth_documents() -> None:
    paths = SPEC["paths"]
    for path in ("/.well-known/jwks.json", "/.well-known/oauth-authorization-server"):
        schema = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert "$ref" in schema, path
    introspect = paths["/oauth/introspect"]["post"]["responses"]["200"]["content"]
    assert "$ref" in introspect["application/json"]["schema"]


def test_rules_the_server_enforces_are_in_the_schemas() -> None:
    create = SPEC["components"]["schemas"]["AgentCreate"]["properties"]
    assert create["description"]["pattern"] == "^[^\\x00]*$"
    assert create["labels"]["additionalProperties"] is False
    label = next(
        p for p in SPEC["paths"]["/v1/agents"]["get"]["parameters"] if p["name"] == "label"
    )
    assert label["schema"]["items"]["pattern"]
    key = next(
        p
        for p in SPEC["paths"]["/v1/agents"]["post"]["parameters"]
        if p["name"] == "Idempotency-Key"
    )
    assert key["schema"]["pattern"] == "^[\\x21-\\x7e]{1,255}$"

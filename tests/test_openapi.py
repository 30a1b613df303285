"""The committed OpenAPI document matches the code, and reads well for generated clients."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import APIRoute

from control_plane.app import create_app
from control_plane.config import Settings
from control_plane.openapi import render

COMMITTED = Path(__file__).parent.parent / "openapi" / "openapi.json"


def _app() -> FastAPI:
    return create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))


def test_committed_document_matches_code() -> None:
    assert COMMITTED.read_text() == render(), "openapi/openapi.json is stale: run `make openapi`"


def test_operation_ids_are_stable_and_readable() -> None:
    spec = json.loads(render())
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    for op_id in ids:
        assert re.fullmatch(r"[a-z]+-[a-z_]+", op_id), op_id


# OPA's decision-log and status uploads (docs/federation.md): OPA sends no Idempotency-Key;
# logs are idempotent by each event's decision_id, a status report replaces the last one.
_WIRE_PROTOCOL_SINKS = {"/v1/logs", "/v1/status"}
# Routes that must hold no transaction: OPA's bundle long poll waits up to a minute, and the
# public bundle keys need no session of the request (their database errors are still 503s).
_NON_TRANSACTIONAL = {"/v1/bundles/{domain}", "/v1/federation/keys"}


def test_every_post_accepts_an_idempotency_key() -> None:
    """Every /v1 POST; the OAuth endpoints follow RFC 6749/7009 instead (a token response must
    never be replayed to whoever repeats a request)."""
    spec = json.loads(render())
    for path, item in spec["paths"].items():
        if "post" not in item or not path.startswith("/v1/"):
            continue
        if path in _WIRE_PROTOCOL_SINKS:
            continue
        headers = [p["name"] for p in item["post"].get("parameters", []) if p["in"] == "header"]
        assert "Idempotency-Key" in headers, path


def test_errors_are_declared_as_problem_json() -> None:
    spec = json.loads(render())
    assert "Problem" in spec["components"]["schemas"]
    for path, item in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for op in item.values():
            for status, response in op["responses"].items():
                if status.startswith("4"):
                    assert "application/problem+json" in response["content"], (path, status)


def test_every_v1_route_is_transactional() -> None:
    from control_plane.kit.routing import TransactionalRoute

    for route in _app().routes:
        if isinstance(route, APIRoute) and route.path.startswith("/v1/"):
            if route.path in _NON_TRANSACTIONAL:
                continue
            assert isinstance(route, TransactionalRoute), route.path


def test_committed_event_schemas_match_code() -> None:
    from control_plane.openapi import render_event_schemas

    directory = COMMITTED.parent / "events"
    committed = {p.name: p.read_text() for p in directory.glob("*.json")}
    assert committed == render_event_schemas(), "openapi/events is stale: run `make openapi`"

"""The committed JSON Schema of the impact report is the code's (`make openapi` writes it)."""

from __future__ import annotations

import json

import jsonschema

from control_plane.openapi import render_impact_report_schema
from tests.fixtures.servers import ROOT

COMMITTED = ROOT / "openapi" / "impact-report.schema.json"


def test_committed_schema_matches_the_code() -> None:
    assert COMMITTED.read_text() == render_impact_report_schema(), (
        "openapi/impact-report.schema.json is stale: run `make openapi`"
    )


def test_the_schema_is_valid_and_refuses_what_is_not_a_report() -> None:
    schema = json.loads(COMMITTED.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert not validator.is_valid({"bundle": "default"})
    assert not validator.is_valid([])

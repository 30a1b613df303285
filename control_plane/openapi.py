"""The committed OpenAPI document: rendered from the app, so it cannot drift from the code
without the drift test failing."""

from __future__ import annotations

import json

from control_plane.app import create_app
from control_plane.config import Settings


def render() -> str:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    return json.dumps(app.openapi(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def render_event_schemas() -> dict[str, str]:
    """``{file name: JSON Schema text}``: one schema per event type (a whole CloudEvents 1.0
    JSON event of that type), committed under ``openapi/events/``."""
    from control_plane.events.types import SCHEMAS, cloudevent_schema

    return {
        f"{event_type}.json": json.dumps(cloudevent_schema(event_type), indent=2) + "\n"
        for event_type in sorted(SCHEMAS)
    }


def write_event_schemas(directory: str) -> None:
    from pathlib import Path

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.json"):
        stale.unlink()
    for name, text in render_event_schemas().items():
        (out / name).write_text(text)


def render_impact_report_schema() -> str:
    """The JSON Schema (2020-12) of an impact report, as the API answers it and
    ``agentctl policy impact --output json`` prints it; committed as
    ``openapi/impact-report.schema.json``."""
    from control_plane.impact.schemas import ImpactReport

    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:agentctl:schema:impact-report",
        **ImpactReport.model_json_schema(mode="serialization"),
    }
    return json.dumps(schema, indent=2) + "\n"


def write_impact_report_schema(path: str) -> None:
    from pathlib import Path

    Path(path).write_text(render_impact_report_schema())

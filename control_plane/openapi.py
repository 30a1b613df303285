"""The committed OpenAPI document: rendered from the app, so it cannot drift from the code
without the drift test failing."""

from __future__ import annotations

import json

from control_plane.app import create_app
from control_plane.config import Settings


def render() -> str:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    return json.dumps(app.openapi(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"

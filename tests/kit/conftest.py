from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from control_plane.config import Settings
from control_plane.kit.database import Database


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    """The kit's Database on a fresh migrated database of each kind (``settings``)."""
    database = Database.open(settings)
    try:
        yield database
    finally:
        await database.aclose()

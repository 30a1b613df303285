"""Audit tests: the app with a fast checkpointer, and an agent that may write records."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.config import Settings


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        data_dir=tmp_path / "data",
        environment="test",
        database_pool_size=30,
        issuer="http://testserver",
        audit_checkpoint_seconds=0.2,
        audit_sequencer_interval_seconds=0.05,
    )

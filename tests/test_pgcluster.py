"""The private cluster that restart and crash tests rely on really stops, crashes and restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from tests.fixtures.pgcluster import PrivateCluster

pytestmark = pytest.mark.postgres


async def _select_one(url: str) -> int:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        value: int = await conn.fetchval("select 1")
        return value
    finally:
        await conn.close()


def test_private_cluster_survives_restart_and_crash(tmp_path: Path) -> None:
    with PrivateCluster(tmp_path) as pg:
        assert asyncio.run(_select_one(pg.url)) == 1
        pg.restart("fast")
        assert asyncio.run(_select_one(pg.url)) == 1
        pg.stop("immediate")
        assert not pg.is_running()
        with pytest.raises(OSError):  # noqa: PT011 (refused connection: errno varies)
            asyncio.run(_select_one(pg.url))
        pg.start()
        assert asyncio.run(_select_one(pg.url)) == 1

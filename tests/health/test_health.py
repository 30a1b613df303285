"""Liveness and readiness as a load balancer or Kubernetes probe sees them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from control_plane import __version__
from control_plane.app import create_app
from control_plane.config import Settings


async def test_ready_when_migrated(client: httpx.AsyncClient, is_postgres: bool) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "version": __version__}
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ok"
    assert ready["database"] == ("postgresql" if is_postgres else "sqlite")
    assert ready["migration"]


async def _get(
    settings: Settings, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get(path, headers=headers)


async def test_not_ready_before_migrations(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}", data_dir=tmp_path
    )
    assert (await _get(settings, "/healthz")).status_code == 200
    r = await _get(settings, "/readyz")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert "agentctl migrate" in r.json()["detail"]


async def test_not_ready_when_database_unreachable(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://nobody:x@127.0.0.1:1/none", data_dir=tmp_path
    )
    r = await _get(settings, "/readyz")
    assert r.status_code == 503
    assert r.json()["code"] == "database_unavailable"
    assert r.json()["detail"] == "The database (postgresql) is unavailable: unreachable."
    assert (await _get(settings, "/healthz")).status_code == 200


async def test_api_answers_503_when_database_unreachable(tmp_path: Path) -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://nobody:x@127.0.0.1:1/none", data_dir=tmp_path
    )
    r = await _get(settings, "/v1/agents", {"Authorization": "Bearer acp_op_" + "x" * 43})
    assert r.status_code == 503
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["code"] == "database_unavailable"
    assert r.json()["cause"] == "unreachable"


@pytest.mark.parametrize("token", ["secret", "acp_op_short", "Bearer acp_op_" + "x" * 40])
def test_admin_token_must_look_like_an_operator_token(token: str) -> None:
    with pytest.raises(ValidationError, match="AGENTCTL_ADMIN_TOKEN"):
        Settings(admin_token=token)

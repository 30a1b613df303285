"""A revoked bootstrap platform_admin stays revoked across restarts (SQLite and PostgreSQL)."""

from __future__ import annotations

import httpx
import pytest
from structlog.testing import capture_logs

from control_plane.app import create_app
from control_plane.config import Settings
from tests.conftest import _bootstrap
from tests.fixtures.factories import create_operator


async def test_revoked_bootstrap_admin_is_not_revived_by_a_restart(
    settings: Settings, client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    other = await create_operator(client, admin, "platform_admin")
    me = (await client.get("/v1/operators", headers=admin)).json()["data"]
    bootstrap = next(o for o in me if o["name"] == "bootstrap-admin")
    r = await client.post(f"/v1/operators/{bootstrap['id']}/revoke", headers=other)
    assert r.status_code == 200, r.text
    assert (await client.get("/v1/agents", headers=admin)).status_code == 401

    # A restart with the same AGENTCTL_ADMIN_TOKEN: warned about, and nothing restored.
    with capture_logs() as logs:
        await _bootstrap(settings)
    assert any(
        e["event"] == "bootstrap_admin_revoked" and e["log_level"] == "warning" for e in logs
    )
    restarted = create_app(settings)
    async with restarted.router.lifespan_context(restarted):
        transport = httpx.ASGITransport(app=restarted, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            assert (await c.get("/v1/agents", headers=admin)).status_code == 401
            row = (await c.get(f"/v1/operators/{bootstrap['id']}", headers=other)).json()
            assert row["revoked_at"] is not None
            assert (await c.get("/v1/agents", headers=other)).status_code == 200


@pytest.mark.parametrize("token", ["acp_op_rotated-admin-token-abcdefghijklmnopqr"])
async def test_unrevoked_bootstrap_token_follows_the_setting(
    settings: Settings, client: httpx.AsyncClient, admin: dict[str, str], token: str
) -> None:
    from control_plane.kit.db import create_engine, create_sessionmaker
    from control_plane.operators.service import ensure_bootstrap_admin

    engine = create_engine(settings.resolved_database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            await ensure_bootstrap_admin(session, token)
            await session.commit()
    finally:
        await engine.dispose()
    assert (await client.get("/v1/agents", headers=admin)).status_code == 401
    ok = await client.get("/v1/agents", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200

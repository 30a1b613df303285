"""The policy stored as the `default` bundle on the first start, and the module it decides with.

A policy directory's committed `policy.wasm` is used only when it was compiled from that
directory's Rego and data (`make wasm` writes their digest beside it): an edited copy of the
shipped policy (`AGENTCTL_DEFAULT_POLICY_DIR`) is compiled by OPA when OPA is there, and is
stored without a module (every decision denied, with the reason) when it is not.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import structlog

from control_plane.config import Settings
from control_plane.kit.db import create_engine, create_sessionmaker
from control_plane.policy import repository
from control_plane.policy.service import ensure_default_bundle
from tests.policy.helpers import POLICIES

pytestmark = pytest.mark.opa


EDITED_REASON = "residency_violation_of_the_edited_copy"


def edited_copy(tmp_path: Path) -> Path:
    """The shipped policy with one deny reason renamed, its policy.wasm and digest copied along."""
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    rego = copy / "agents" / "authz.rego"
    source = rego.read_text()
    assert 'deny_reasons contains "residency_violation" if' in source
    rego.write_text(source.replace('"residency_violation"', f'"{EDITED_REASON}"'))
    return copy


async def stored_module(settings: Settings) -> bytes | None:
    engine = create_engine(settings.resolved_database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            assert await ensure_default_bundle(session, settings) == 1
            await session.commit()
            revision = await repository.get_revision(session, "default", 1)
            assert revision is not None
            return revision.wasm
    finally:
        await engine.dispose()


async def test_the_shipped_policy_decides_with_its_committed_module(
    settings: Settings, tmp_path: Path
) -> None:
    # No OPA: the module committed beside the Rego is the one stored.
    unchanged = tmp_path / "policies"
    shutil.copytree(POLICIES, unchanged)
    configured = settings.model_copy(
        update={"default_policy_dir": unchanged, "opa_bin": str(tmp_path / "no-opa")}
    )
    assert await stored_module(configured) == (POLICIES / "policy.wasm").read_bytes()


async def test_an_edited_copy_without_opa_is_stored_without_the_originals_module(
    settings: Settings, tmp_path: Path
) -> None:
    configured = settings.model_copy(
        update={"default_policy_dir": edited_copy(tmp_path), "opa_bin": str(tmp_path / "no-opa")}
    )
    with structlog.testing.capture_logs() as logs:
        assert await stored_module(configured) is None
    events = [entry["event"] for entry in logs]
    assert "default_policy_module_not_used" in events, logs
    assert "default_policy_not_compiled" in events, logs


async def test_an_edited_copy_with_opa_is_compiled_from_the_edit(
    settings: Settings, tmp_path: Path, opa_bin: str
) -> None:
    configured = settings.model_copy(
        update={"default_policy_dir": edited_copy(tmp_path), "opa_bin": opa_bin}
    )
    module = await stored_module(configured)
    assert module is not None
    # The module holds the edited Rego's strings, not the original's.
    assert module != (POLICIES / "policy.wasm").read_bytes()
    assert EDITED_REASON.encode() in module
    assert EDITED_REASON.encode() not in (POLICIES / "policy.wasm").read_bytes()

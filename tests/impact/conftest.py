"""The impact tests upload candidate revisions, which OPA compiles: they need the pinned OPA."""

from __future__ import annotations

import pytest

from tests.policy.helpers import IN_CI, OPA_VERSION, find_opa_bin


@pytest.fixture(scope="session")
def opa_bin() -> str:
    found = find_opa_bin()
    if found is None:
        reason = (
            f"no OPA binary: set AGENTCTL_OPA_BIN or run scripts/install-opa.sh ({OPA_VERSION})"
        )
        if IN_CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return found


@pytest.fixture(autouse=True)
def _needs_opa(opa_bin: str) -> None:
    """Every test here uploads a revision (compiled by OPA at upload)."""

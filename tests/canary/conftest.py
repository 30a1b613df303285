"""A real OPA binary for the decision tests (same rules as tests/policy: never skipped in CI)."""

from __future__ import annotations

import pytest

from tests.policy.helpers import IN_CI, find_opa_bin


@pytest.fixture(scope="session")
def opa_bin() -> str:
    found = find_opa_bin()
    if found is None:
        reason = "no OPA binary: set AGENTCTL_OPA_BIN or run scripts/install-opa.sh"
        if IN_CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return found

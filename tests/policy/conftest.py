"""Fixtures for the policy tests: the shipped bundle, a real OPA binary and OPA servers.

The OPA binary comes from `AGENTCTL_OPA_BIN`, else from where `scripts/install-opa.sh` puts it.
Without one, tests that need it are skipped with the reason, except under `CI=true`, where a
missing binary fails them: in CI no OPA test may skip.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from control_plane.policy.bundles import read_policy_dir
from control_plane.policy.engines.base import LoadedBundle
from tests.policy.helpers import IN_CI, OPA_VERSION, POLICIES, OpaServer, find_opa_bin, running_opa


@pytest.fixture(scope="session")
def opa_bin() -> str:
    found = find_opa_bin()
    if found is None:
        reason = (
            "no OPA binary: set AGENTCTL_OPA_BIN or run scripts/install-opa.sh "
            f"(expects OPA {OPA_VERSION})"
        )
        if IN_CI:
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def opa_server(opa_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    """One OPA shared by tests that only ever load the shipped bundle into it."""
    with running_opa(opa_bin, tmp_path_factory.mktemp("opa") / "opa.log") as server:
        yield server


@pytest.fixture
def start_opa(opa_bin: str, tmp_path: Path) -> Iterator[Callable[[], OpaServer]]:
    """Start a fresh OPA per call (own bundles, or killed by the test); all stop at teardown."""
    with contextlib.ExitStack() as stack:
        counter = itertools.count()

        def start() -> OpaServer:
            log = tmp_path / f"opa-{next(counter)}.log"
            return stack.enter_context(running_opa(opa_bin, log))

        yield start


@pytest.fixture(scope="session")
def shipped_bundle() -> LoadedBundle:
    source = read_policy_dir(POLICIES)
    # policies/policy.wasm is the shipped policy compiled by the pinned OPA (`make wasm`);
    # tests/policy/test_wasm_engine.py fails when it no longer matches the Rego.
    return LoadedBundle(
        modules=source.modules,
        data=source.data,
        revision="shipped",
        wasm=(POLICIES / "policy.wasm").read_bytes(),
    )

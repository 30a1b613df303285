"""The committed capabilities file is what scripts/gen_capabilities.py produces from the pinned
OPA and the engines' probes, and it is the file `opa check` runs with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.policy.validation.opa import CAPABILITIES, OPA_VERSION
from tests.policy.helpers import OPA_VERSION as TESTED_OPA_VERSION

ROOT = Path(__file__).parent.parent.parent
pytestmark = pytest.mark.opa


def test_committed_file_matches_the_script(opa_bin: str) -> None:
    generated = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_capabilities.py"), "--opa", opa_bin],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    assert generated == CAPABILITIES.read_text(encoding="utf-8"), (
        "run: .venv/bin/python scripts/gen_capabilities.py "
        "--output control_plane/policy/validation/capabilities.json"
    )


def test_builtins_the_wasm_engine_lacks_are_left_out() -> None:
    names = {b["name"] for b in json.loads(CAPABILITIES.read_text())["builtins"]}
    # Host builtins of the wasm target the engine does not implement, or reaching the host:
    # never in the file.
    for name in ("net.cidr_expand", "time.weekday", "time.clock", "http.send", "opa.runtime"):
        assert name not in names
    # What the shipped policy uses is there.
    for name in ("object.union", "time.parse_rfc3339_ns", "regex.match", "print", "assign"):
        assert name in names


def test_one_pinned_opa_version() -> None:
    script = (ROOT / "scripts" / "install-opa.sh").read_text()
    assert f"OPA_VERSION=${{OPA_VERSION:-{OPA_VERSION}}}" in script
    assert TESTED_OPA_VERSION == OPA_VERSION

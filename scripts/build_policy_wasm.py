#!/usr/bin/env python3
"""Compile the shipped policy (policies/) to policies/policy.wasm, the module the wasm engine runs.

    .venv/bin/python scripts/build_policy_wasm.py [--opa BIN] [--check]

The module is what an upload of the same directory stores (`validation.validate_and_compile`:
the pinned OPA's `opa build -t wasm -e agents/authz/decision` over the runtime modules and
data), committed so that a fresh `make run` decides with the wasm engine without an OPA binary.
`--check` exits 1 when the committed file differs (tests/policy/test_wasm_module.py runs it in
CI, like the OpenAPI drift test). `make wasm` runs this script.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from control_plane.policy.bundles import read_policy_dir
from control_plane.policy.validation import validate_and_compile
from control_plane.policy.validation.opa import WASM_MODULE, default_opa_bin

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
TARGET = POLICIES / WASM_MODULE.lstrip("/")


def build(opa_bin: str, directory: Path = POLICIES) -> bytes:
    """The module compiled from `directory`; raises SystemExit with OPA's issues."""
    source = read_policy_dir(directory)
    issues, wasm = validate_and_compile(source.modules, source.data, opa_bin=opa_bin)
    if issues or wasm is None:
        text = "; ".join(i.text() for i in issues) or "no agents.authz package"
        raise SystemExit(f"cannot compile {directory}: {text}")
    return wasm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--opa", default=os.environ.get("AGENTCTL_OPA_BIN") or str(default_opa_bin())
    )
    parser.add_argument("--check", action="store_true", help="fail if the committed file differs")
    args = parser.parse_args()
    wasm = build(args.opa)
    if args.check:
        if not TARGET.is_file() or TARGET.read_bytes() != wasm:
            print(f"{TARGET.relative_to(ROOT)} is stale: run `make wasm`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_bytes(wasm)
    print(f"wrote {TARGET.relative_to(ROOT)} ({len(wasm)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Compile the shipped policy (policies/) to policies/policy.wasm, the module the wasm engine runs.

    .venv/bin/python scripts/build_policy_wasm.py [--opa BIN] [--check]

The module is what an upload of the same directory stores (`validation.validate_and_compile`:
the pinned OPA's `opa build -t wasm -e agents/authz/decision` over the runtime modules and
data), committed so that a fresh `make run` decides with the wasm engine without an OPA binary,
with policies/policy.wasm.source-digest, the digest of the sources it was compiled from (the
service uses a directory's module only when that digest matches the directory's Rego and data).
`--check` exits 1 when either committed file differs (tests/policy/test_wasm_engine.py runs it
in CI, like the OpenAPI drift test). `make wasm` runs this script.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from control_plane.policy.bundles import read_policy_dir
from control_plane.policy.service import content_digest
from control_plane.policy.validation import validate_and_compile
from control_plane.policy.validation.opa import WASM_MODULE, WASM_SOURCE_DIGEST, default_opa_bin

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
TARGET = POLICIES / WASM_MODULE.lstrip("/")
STAMP = POLICIES / WASM_SOURCE_DIGEST


def build(opa_bin: str, directory: Path = POLICIES) -> tuple[bytes, str]:
    """The module compiled from `directory` and the digest of its sources; raises SystemExit
    with OPA's issues."""
    source = read_policy_dir(directory)
    issues, wasm = validate_and_compile(source.modules, source.data, opa_bin=opa_bin)
    if issues or wasm is None:
        text = "; ".join(i.text() for i in issues) or "no agents.authz package"
        raise SystemExit(f"cannot compile {directory}: {text}")
    return wasm, content_digest(source.modules, source.data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--opa", default=os.environ.get("AGENTCTL_OPA_BIN") or str(default_opa_bin())
    )
    parser.add_argument("--check", action="store_true", help="fail if the committed file differs")
    args = parser.parse_args()
    wasm, digest = build(args.opa)
    stamp = f"{digest}\n"
    if args.check:
        for path, expected in ((TARGET, wasm), (STAMP, stamp.encode())):
            if not path.is_file() or path.read_bytes() != expected:
                print(f"{path.relative_to(ROOT)} is stale: run `make wasm`", file=sys.stderr)
                return 1
        return 0
    TARGET.write_bytes(wasm)
    STAMP.write_text(stamp, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)} ({len(wasm)} bytes) and {STAMP.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

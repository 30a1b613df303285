#!/usr/bin/env python3
"""Generate control_plane/policy/validation/capabilities.json: the builtins every engine runs.

    .venv/bin/python scripts/gen_capabilities.py [--opa BIN] [--output FILE]

Starts from `opa capabilities --current` of the pinned OPA (its JSON format, so `opa check
--capabilities FILE` reads the result) and keeps a builtin only if every engine in `ENGINES`
evaluates it, minus `REFUSED` (builtins that reach the host or the network). An engine's probe
answers, for each builtin name, whether it implements it; to add an engine, add its probe to
`ENGINES`. The OPA engine runs every builtin, so only the wasm engine is probed.

The wasm engine is probed by compiling every builtin with the pinned OPA's wasm target and
reading which the module imports from the host: those are refused unless the engine implements
them (`wasm_supports`).

Prints the file to stdout when no --output is given; tests/policy/test_capabilities.py checks that
the committed file equals this script's output.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "control_plane" / "policy" / "validation" / "capabilities.json"
DEFAULT_OPA = Path.home() / ".cache/agentctl/tools/opa-v1.22.2/opa"

# Builtins no uploaded policy may use, whatever the engine: they reach the host (environment,
# configuration) or the network rather than the decision's input and data.
REFUSED = frozenset({"http.send", "net.lookup_ip_addr", "opa.runtime"})

# Operators that are syntax rather than callable names in Rego.
SYNTAX = {"assign": "r if {\n\tx := 1\n\tx == 1\n}", "eq": "r if 1 = 1"}
MAX_FORMS = 16

Decl = dict[str, Any]


def _samples(decl: Decl) -> list[str]:
    """Rego literals of each form a declared type allows (one per `of` alternative)."""
    kind = decl.get("type")
    alternatives = decl.get("of")
    if kind == "any" and isinstance(alternatives, list):
        return [s for alt in alternatives for s in _samples(alt)]
    if kind == "array" and isinstance(decl.get("static"), list):
        items = [_samples(item)[0] for item in decl["static"]]
        return ["[" + ", ".join(items) + "]"]
    return {
        "number": ["1"],
        "string": ['"UTC"'],
        "boolean": ["true"],
        "null": ["null"],
        "array": ["[]"],
        "object": ["{}"],
        "set": ["set()"],
    }.get(str(kind), ["1"])


def _expressions(builtin: Decl) -> list[str]:
    name = builtin["name"]
    if name in SYNTAX:
        return [SYNTAX[name]]
    args = [_samples(arg) for arg in builtin.get("decl", {}).get("args", [])]
    forms = itertools.islice(itertools.product(*args), MAX_FORMS)
    return [f"r := {name}({', '.join(form)})" for form in forms]


def _wasm_build(opa_bin: str, exprs: list[str]) -> bytes | None:
    """The module `opa build -t wasm` compiles from one probe rule per expression, or None."""
    import tempfile

    from control_plane.policy.validation.opa import build_wasm

    rules = [
        e.replace("r := ", f"r{i} := ", 1).replace("r if ", f"r{i} if ", 1)
        for i, e in enumerate(exprs)
    ]
    with tempfile.TemporaryDirectory(prefix="agentctl-probe-") as tmp:
        root = Path(tmp, "bundle")
        root.mkdir()
        (root / "probe.rego").write_text("package probe\n\n" + "\n\n".join(rules) + "\n")
        wasm, _ = build_wasm(opa_bin, root, "probe", 120.0)
    return wasm


def wasm_supports(builtins: list[Decl]) -> set[str]:
    """Names of the builtins the wasm engine evaluates: those OPA compiles into the module, plus
    the host builtins the engine implements (`engines.wasm.HOST_BUILTINS`).

    One module is compiled with a probe rule for every form of every builtin; the module's
    `builtins` export names those it leaves to the host. A builtin whose forms do not compile
    for the wasm target at all (the whole build fails) is probed alone and dropped if it fails.
    """
    from control_plane.policy.engines.wasm import HOST_BUILTINS, missing_host_builtins

    opa_bin = os.environ.get("AGENTCTL_OPA_BIN") or str(DEFAULT_OPA)
    forms = {b["name"]: _expressions(b) for b in builtins}
    # Without --wasm-include-print, OPA erases print statements from the module: a statement
    # compiles (to nothing), a call used as a value would import the builtin.
    forms["print"] = ["r if {\n\tprint(1)\n}"]
    names = set(forms)
    wasm = _wasm_build(opa_bin, [e for exprs in forms.values() for e in exprs])
    if wasm is None:
        names = {n for n in names if _wasm_build(opa_bin, forms[n]) is not None}
        wasm = _wasm_build(opa_bin, [e for n in sorted(names) for e in forms[n]])
        assert wasm is not None
    host = set(missing_host_builtins(wasm)) | (set(HOST_BUILTINS) & names)
    imported = host - set(HOST_BUILTINS)
    return names - imported


ENGINES: dict[str, Callable[[list[Decl]], set[str]]] = {
    "wasm": wasm_supports,
}


def generate(opa_bin: str) -> str:
    """The capabilities JSON text (OPA's format, one builtin per line, sorted by name)."""
    current = json.loads(
        subprocess.run(  # noqa: S603 - the OPA binary given, fixed arguments
            [opa_bin, "capabilities", "--current"], check=True, capture_output=True, text=True
        ).stdout
    )
    builtins: list[Decl] = current["builtins"]
    keep = {b["name"] for b in builtins} - REFUSED
    for probe in ENGINES.values():
        keep &= probe(builtins)
    kept = sorted((b for b in builtins if b["name"] in keep), key=lambda b: str(b["name"]))
    # One builtin per line: a reviewable diff when OPA or an engine changes, in few lines.
    lines = [_compact(b) for b in kept]
    rest = {k: v for k, v in sorted(current.items()) if k != "builtins"}
    parts = ['{\n"builtins": [\n' + ",\n".join(lines) + "\n]"]
    parts += [f"{_compact(k)}: {_compact(v)}" for k, v in rest.items()]
    return ",\n".join(parts) + "\n}\n"


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opa", default=os.environ.get("AGENTCTL_OPA_BIN") or str(DEFAULT_OPA))
    parser.add_argument("--output", type=Path, help=f"write here (e.g. {TARGET.relative_to(ROOT)})")
    args = parser.parse_args()
    text = generate(args.opa)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

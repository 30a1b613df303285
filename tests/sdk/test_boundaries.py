"""The SDK stands alone: nothing from ``control_plane``, and only httpx and pydantic (plus the
optional OpenTelemetry API, cryptography for private_key_jwt, and local mode's extra: joserfc,
opa-py-wasm, wasmtime, imported only when local mode is used) beyond the standard library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import agent_sdk

SDK_DIR = Path(agent_sdk.__file__).parent
LOCAL_EXTRA = {"joserfc", "opapywasm", "wasmtime"}
ALLOWED = {"agent_sdk", "httpx", "pydantic", "opentelemetry", "cryptography", *LOCAL_EXTRA}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_sdk_sources_import_only_the_allowed_packages() -> None:
    files = sorted(SDK_DIR.rglob("*.py"))
    assert len(files) > 5
    for path in files:
        foreign = imported_roots(path) - ALLOWED - set(sys.stdlib_module_names)
        assert not foreign, f"{path.name} imports {foreign}"
        assert "control_plane" not in imported_roots(path)


def test_remote_mode_loads_none_of_the_local_extra() -> None:
    code = (
        "import json, sys, agent_sdk; "
        "agent_sdk.Client('http://127.0.0.1:9', 'c', 's', outbox_path='/nonexistent/o.db'); "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {LOCAL_EXTRA!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []


def test_importing_the_sdk_loads_no_control_plane_module() -> None:
    code = (
        "import json, sys, agent_sdk; "
        "from agent_sdk import Client, AsyncClient; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'control_plane')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []


def test_public_names_are_exported() -> None:
    for name in agent_sdk.__all__:
        assert hasattr(agent_sdk, name), name
    assert (SDK_DIR / "py.typed").exists()

"""A TypeScript client from the committed document (openapi-typescript types, openapi-fetch calls,
TypeScript 5 ``--strict``), run with Node against a live server.

The npm packages are pinned in tests/conformance/ts/package.json and package-lock.json and
installed by this test with ``npm ci`` (npm's cache in ~/.npm makes repeats fast).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conformance.conftest import HERE, Live, tool
from tests.fixtures.servers import ROOT

TS = HERE / "ts"


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=TS, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def built() -> Path:
    npm = tool("npm")
    done = _run(npm, "ci", "--no-audit", "--no-fund", "--prefer-offline")
    assert done.returncode == 0, done.stdout + done.stderr
    (TS / "generated").mkdir(exist_ok=True)
    # --default-non-nullable false: a request field with a default is optional to send.
    done = _run(
        str(TS / "node_modules" / ".bin" / "openapi-typescript"),
        str(ROOT / "openapi" / "openapi.json"),
        "--default-non-nullable",
        "false",
        "-o",
        str(TS / "generated" / "schema.ts"),
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for word in ("warn", "error", "⚠"):
        assert word not in output.lower(), output
    done = _run(str(TS / "node_modules" / ".bin" / "tsc"), "-p", ".")
    assert done.returncode == 0, done.stdout + done.stderr
    return TS / "build" / "src" / "flow.js"


def test_typescript_client_against_live_server(built: Path, live: Live) -> None:
    done = _run(tool("node"), str(built), live.url, live.admin_token, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr + live.log.read_text()[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["ok"] is True

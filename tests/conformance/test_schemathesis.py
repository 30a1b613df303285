"""schemathesis over every operation of the committed document against a live server: no server
error, no status code the document does not declare, no response off its schema or content type.

Bounded (a fixed seed, a few examples per operation) so it takes a couple of minutes on 2 cores.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.conftest import ADMIN_TOKEN, Live, tool
from tests.fixtures.servers import ROOT, free_port, server_env, serving

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    )
)


@pytest.fixture
def sqlite_live(tmp_path: Path, sqlite_template: Path) -> Iterator[Live]:
    import shutil

    db = tmp_path / "st.db"
    shutil.copyfile(sqlite_template, db)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = server_env(
        f"sqlite+aiosqlite:///{db}", tmp_path, AGENTCTL_ADMIN_TOKEN=ADMIN_TOKEN, AGENTCTL_ISSUER=url
    )
    log = tmp_path / "serve.log"
    with serving(env, log, port=port):
        yield Live(url=url, admin_token=ADMIN_TOKEN, log=log)


def test_every_operation_conforms(sqlite_live: Live, tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    done = subprocess.run(
        [
            tool(str(bindir / "schemathesis"), "schemathesis"),
            "run",
            str(ROOT / "openapi" / "openapi.json"),
            "--url",
            sqlite_live.url,
            "--checks",
            CHECKS,
            "--max-examples",
            "8",
            "--seed",
            "8",
            "--phases",
            "examples,coverage,fuzzing",
            "--header",
            f"Authorization: Bearer {sqlite_live.admin_token}",
            "--request-timeout",
            "20",
            "--no-shrink",
            "--continue-on-failure",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=tmp_path,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-20000:]
    assert "No issues found" in output or "passed" in output, output[-5000:]

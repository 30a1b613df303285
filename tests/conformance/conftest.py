"""Conformance tests: clients and validators nobody on the project wrote, against a live server.

Each test here starts a real ``agentctl serve`` (tests/servers.py) with a configured admin token and
an issuer equal to the server's own URL, so audiences and metadata URLs are the ones a client sees.
Tool chains (npm packages, Go modules) install from the pinned files beside the tests into the
usual user caches; nothing here skips under CI=true.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.servers import free_port, server_env, serving

ADMIN_TOKEN = "acp_op_conformance-admin-token-0123456789abcdef"
HERE = Path(__file__).parent


@dataclass(frozen=True)
class Live:
    url: str
    admin_token: str
    log: Path

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[Live]:
    """A running ``agentctl serve`` on a fresh database of each kind."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = server_env(db_url, tmp_path, AGENTCTL_ADMIN_TOKEN=ADMIN_TOKEN, AGENTCTL_ISSUER=url)
    log = tmp_path / "serve.log"
    with serving(env, log, port=port):
        yield Live(url=url, admin_token=ADMIN_TOKEN, log=log)


def tool(name: str, *fallbacks: str) -> str:
    """The path of a command-line tool; a missing one fails the test (never a skip)."""
    for candidate in (name, *fallbacks):
        found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if found:
            return found
    pytest.fail(f"{name} is not installed; the conformance tests need it")


GO = "/usr/local/go/bin/go"


@pytest.fixture(scope="session")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> str:
    """tests/conformance/go built with the pinned go.mod (modules cached in Go's usual caches)."""
    import subprocess

    out = tmp_path_factory.mktemp("go") / "oauth-client"
    done = subprocess.run(
        [tool("go", GO), "build", "-mod=readonly", "-o", str(out), "."],
        cwd=HERE / "go",
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return str(out)

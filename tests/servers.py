"""Real ``agentctl serve`` processes for tests where the network and processes matter."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_env(db_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCTL_")}
    env.update(
        AGENTCTL_DATABASE_URL=db_url,
        AGENTCTL_DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=str(ROOT),
        **extra,
    )
    return env


def agentctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "control_plane", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# What a 500 or an unhandled exception leaves in a server's log (uvicorn's access and error log).
_SERVER_ERRORS = re.compile(r'" 500 |Exception in ASGI application|unhandled_error')


class Server:
    """A running ``agentctl serve`` process (``start_server``)."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, as a crash or the OOM killer would end it."""
        self.proc.kill()
        self.proc.wait(timeout=30)

    def errors(self) -> list[str]:
        """Log lines that tell of a 500 answer or an unhandled exception."""
        return [line for line in self.log.read_text().splitlines() if _SERVER_ERRORS.search(line)]


def start_server(env: dict[str, str], log: Path, port: int | None = None) -> Server:
    """Start ``agentctl serve`` and return once it is ready (the caller stops it)."""
    port = port or free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "control_plane", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise AssertionError(log.read_text())
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return Server(proc, url, log)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(log.read_text())
        time.sleep(0.2)


@contextmanager
def serving(env: dict[str, str], log: Path, port: int | None = None) -> Iterator[str]:
    """Run ``agentctl serve`` until the block ends; yields its base URL once it is ready.

    Fails the test if the server answered 500 or logged an unhandled exception."""
    server = start_server(env, log, port)
    try:
        yield server.url
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=30)
    errors = server.errors()
    assert not errors, "the server answered 500 or failed unhandled:\n" + "\n".join(errors)

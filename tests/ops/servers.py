"""Real ``agentctl serve`` processes with options (``--workers``), and reading their database."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from control_plane.kit.db import create_engine
from tests.fixtures.servers import Server, free_port


def start(env: dict[str, str], log: Path, *args: str) -> Server:
    """``agentctl serve --port PORT ARGS...`` on a free port, returned once /readyz answers 200
    (workers import the app in fresh processes: allow for a slow, shared machine). A port taken
    between choosing and binding it (other test runs share the machine) is chosen again."""
    for _ in range(5):
        try:
            return _start(env, log, free_port(), args)
        except PortTaken:
            continue
    raise AssertionError("no free port")


class PortTaken(Exception):
    pass


def _start(env: dict[str, str], log: Path, port: int, args: tuple[str, ...]) -> Server:
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "control_plane", "serve", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            if "Address already in use" in log.read_text():
                raise PortTaken()
            raise AssertionError(log.read_text())
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return Server(proc, url, log)
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(log.read_text())
        time.sleep(0.3)


def stop(server: Server, timeout: float = 60) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        server.proc.wait(timeout=timeout)


async def query(db_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` run directly on the database (what is really stored)."""
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in (await conn.execute(text(sql), params)).all()]
    finally:
        await engine.dispose()

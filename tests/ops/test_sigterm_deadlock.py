"""SIGTERM arriving while the server writes a log line must not deadlock it.

A signal handler runs in the main thread between two bytecodes of whatever it interrupted. The
drain handler used to log from there; when SIGTERM landed inside structlog's write (which holds
its stream's lock), the handler waited for that lock forever: the process ignored SIGTERM and
hung (seen in CI: no "shutdown_draining" line, py-spy showing the handler inside
``PrintLogger.msg``). This runs the handler in exactly that position, in a process of its own
(signal handlers belong to the main thread).
"""

from __future__ import annotations

import subprocess
import sys

from tests.fixtures.servers import ROOT

SCRIPT = r"""
import asyncio, os, signal, sys
from structlog import _output
from control_plane.kit import lifecycle

called = []

def handle_exit(sig, frame):  # the name the drain handler looks for (uvicorn's)
    called.append(sig)

signal.signal(signal.SIGTERM, handle_exit)

async def main():
    lifecycle.install_sigterm_drain(0)
    lock = _output._get_lock_for_file(sys.stdout)  # what PrintLogger holds while it writes
    with lock:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, mid-"write"
        for _ in range(10_000):
            pass
    await asyncio.sleep(0.1)
    print("server exit called" if called else "server exit not called", flush=True)

asyncio.run(main())
"""


def test_sigterm_during_a_log_write_still_stops_the_server() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,  # the deadlock: never returns
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "shutdown_draining" in done.stdout
    assert "server exit called" in done.stdout

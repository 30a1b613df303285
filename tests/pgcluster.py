"""A private PostgreSQL cluster for tests that stop, restart or crash the database.

The shared test cluster (``AGENTCTL_TEST_DATABASE_URL``) serves every other test, often from
several test runs at once, so a test that restarts PostgreSQL must never touch it. This module
creates a throwaway cluster with Debian's PostgreSQL binaries in a temporary directory, on a
free loopback port, owned by the ``postgres`` system user when the tests run as root (initdb
refuses root), and removes it afterwards.

The cluster lives in a directory of its own under the system temporary directory, not under
pytest's ``tmp_path``: pytest resets its base directory (``/tmp/pytest-of-root``) to mode 0700
whenever another test run starts, which would lock the ``postgres`` user out of its own data
directory, log and socket mid-test. The server log is copied to ``base`` on exit.

Usage::

    with PrivateCluster(tmp_path) as pg:
        url = pg.url            # postgresql+asyncpg://agentctl:agentctl@127.0.0.1:PORT/agentctl
        pg.restart("fast")      # pg_ctl restart -m fast
        pg.stop("immediate")    # a crash: no shutdown checkpoint
        pg.start()
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

StopMode = Literal["smart", "fast", "immediate"]
USER = "agentctl"
PASSWORD = "agentctl"
DATABASE = "agentctl"


def pg_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL ``bin`` directory, or None when PostgreSQL is not installed."""
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return None
    versions = sorted(
        (p for p in root.iterdir() if (p / "bin" / "pg_ctl").exists()),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.name.split(".")],
    )
    return versions[-1] / "bin" if versions else None


def _stable_port() -> int:
    """A free port below the kernel's ephemeral range (32768 and up on Linux). While the cluster
    is stopped its port is free, and a port from ``free_port()`` (an ephemeral one) could then be
    handed to another test's server; one below the range is never handed out that way."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for the private PostgreSQL cluster")


class PrivateCluster:
    """A PostgreSQL cluster of its own; see the module docstring."""

    def __init__(self, base: Path) -> None:
        bindir = pg_bin_dir()
        if bindir is None:
            raise RuntimeError("PostgreSQL binaries not found under /usr/lib/postgresql")
        self.bindir = bindir
        self.base = base
        self.dir = Path(tempfile.mkdtemp(prefix="agentctl-pgcluster-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = _stable_port()
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")
        if check and done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def __enter__(self) -> PrivateCluster:
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_postgres:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        self._run(
            [
                "initdb", "-D", str(self.data), "-U", USER, "--pwfile", str(pwfile),
                "--auth=md5", "--no-sync", "-E", "UTF8", "--locale=C",
            ]
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.dir}'\nfsync = on\nmax_connections = 200\n"
            )
        self.start()
        self._createdb()
        return self

    def _createdb(self) -> None:
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        subprocess.run(
            [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER,
             DATABASE],
            check=True, capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip

    def start(self) -> None:
        self._run(["pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"])

    def stop(self, mode: StopMode = "fast") -> None:
        self._run(["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])

    def restart(self, mode: StopMode = "fast") -> None:
        self._run(
            ["pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", mode, "-w", "-t", "60",
             "restart"]
        )  # fmt: skip

    def is_running(self) -> bool:
        return self._run(["pg_ctl", "-D", str(self.data), "status"], check=False).returncode == 0

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = self._run(["pg_isready", "-h", "127.0.0.1", "-p", str(self.port)], check=False)
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("private PostgreSQL did not become ready")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.is_running():
                self.stop("immediate")
            if self.log.exists():
                self.base.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.log, self.base / "postgres.log")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

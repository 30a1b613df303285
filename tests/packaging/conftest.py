"""Built distributions and fresh virtual environments outside the repository.

`dists` builds both distributions' wheels and sdists once per session (`python -m build`, no
build isolation: the pinned hatchling of .venv). `wheelhouse` holds every dependency as a wheel,
downloaded once per set of pins into ~/.cache/agentctl/wheelhouse/<digest> (the only step that
needs PyPI), so each install below is `pip install --no-index --find-links`: offline and fast.
A venv gets no pip of its own: .venv's pip installs into it (`pip --python`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.servers import ROOT

SDK_PROJECT = ROOT / "packages" / "agent-control-plane-sdk"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]


@dataclass(frozen=True)
class Dists:
    server_wheel: Path
    server_sdist: Path
    sdk_wheel: Path
    sdk_sdist: Path


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=clean_env(),
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing of the repository or of this test run."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "PIP_CACHE_DIR", "PIP_INDEX_URL")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    out = tmp_path_factory.mktemp("dist")
    for project in (ROOT, SDK_PROJECT):
        run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, project)
    [server_wheel] = out.glob("agent_control_plane-*.whl")
    [server_sdist] = out.glob("agent_control_plane-*.tar.gz")
    [sdk_wheel] = out.glob("agent_control_plane_sdk-*.whl")
    [sdk_sdist] = out.glob("agent_control_plane_sdk-*.tar.gz")
    return Dists(server_wheel, server_sdist, sdk_wheel, sdk_sdist)


@pytest.fixture(scope="session")
def wheelhouse(dists: Dists) -> Path:
    pins = hashlib.sha256()
    for path in (ROOT / "constraints.txt", ROOT / "pyproject.toml", SDK_PROJECT / "pyproject.toml"):
        pins.update(path.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    house = cache / "agentctl" / "wheelhouse" / pins.hexdigest()[:16]
    house.parent.mkdir(parents=True, exist_ok=True)
    # One download at a time: pytest-xdist workers (and concurrent runs) share this cache.
    with (house.parent / f"{house.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _fill(house, dists)
    return house


def _fill(house: Path, dists: Dists) -> None:
    if not (house / ".complete").exists():
        shutil.rmtree(house, ignore_errors=True)
        house.mkdir(parents=True)
        run(
            *PIP, "download", "--quiet", "--dest", house, "--only-binary=:all:",
            "--constraint", ROOT / "constraints.txt",
            dists.server_wheel, f"agent-control-plane-sdk[local] @ {dists.sdk_wheel.as_uri()}",
            # What pip needs to build a wheel from the sdists (PEP 517 isolation, offline).
            "hatchling",
        )  # fmt: skip
        for ours in house.glob("agent_control_plane*"):
            ours.unlink()
        (house / ".complete").touch()


def make_venv(where: Path) -> Path:
    """A fresh venv outside the repository; its python."""
    venv.EnvBuilder(with_pip=False, clear=True).create(where)
    return where / "bin" / "python"


def install(python: Path, wheelhouse: Path, dists: Dists, *what: str | Path) -> None:
    run(
        *PIP, "--python", python, "install", "--quiet", "--no-index",
        "--find-links", wheelhouse, "--find-links", dists.server_wheel.parent, *what,
    )  # fmt: skip

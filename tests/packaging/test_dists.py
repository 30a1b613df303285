"""What the built distributions hold, and that their metadata passes `twine check`."""

from __future__ import annotations

import sys
import tarfile
import zipfile
from email.parser import Parser

import pytest

import agent_sdk
from control_plane import __version__
from tests.fixtures.servers import ROOT
from tests.packaging.conftest import Dists, run

pytestmark = pytest.mark.packaging


def _wheel(path: object) -> tuple[set[str], dict[str, list[str]]]:
    with zipfile.ZipFile(str(path)) as wheel:
        names = set(wheel.namelist())
        [meta] = [n for n in names if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(wheel.read(meta).decode())
    return names, {key: message.get_all(key) or [] for key in ("Version", "Requires-Dist")}


def test_twine_check_passes(dists: Dists) -> None:
    out = run(sys.executable, "-m", "twine", "check", "--strict", *vars(dists).values())
    assert out.count("PASSED") == 4, out


def test_server_wheel_holds_its_data(dists: Dists) -> None:
    names, meta = _wheel(dists.server_wheel)
    assert meta["Version"] == [__version__]
    policies = {
        p.relative_to(ROOT / "policies").as_posix()
        for p in (ROOT / "policies").rglob("*")
        if p.is_file()
    }
    assert {f"control_plane/default_policy/{p}" for p in policies} <= names
    migrations = {p.name for p in (ROOT / "control_plane/migrations/versions").glob("*.py")}
    assert {f"control_plane/migrations/versions/{m}" for m in migrations} <= names
    assert {"control_plane/py.typed", "control_plane/migrations/script.py.mako"} <= names
    assert not any(n.startswith("agent_sdk/") or "__pycache__" in n for n in names)


def test_sdk_wheel_holds_the_sdk_only(dists: Dists) -> None:
    names, meta = _wheel(dists.sdk_wheel)
    assert meta["Version"] == [agent_sdk.__version__] == [__version__]  # released in lockstep
    packages = {n.split("/")[0] for n in names if not n.startswith("agent_control_plane_sdk")}
    assert packages == {"agent_sdk"}
    assert "agent_sdk/py.typed" in names
    required = {
        r.split(";")[0].split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip()
        for r in meta["Requires-Dist"]
        if "extra ==" not in r
    }
    assert required == {"httpx", "pydantic"}


def test_sdk_sdist_holds_real_files(dists: Dists) -> None:
    with tarfile.open(dists.sdk_sdist) as sdist:
        members = {m.name.split("/", 1)[1]: m for m in sdist.getmembers() if "/" in m.name}
    assert members["agent_sdk/__init__.py"].isfile()  # the link in the repository, resolved
    assert "agent_sdk/py.typed" in members

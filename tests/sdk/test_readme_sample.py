"""The README's Python SDK sample runs as printed, against a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures.servers import ROOT
from tests.sdk.conftest import Agent, Server


def _sample() -> str:
    section = (ROOT / "README.md").read_text().split("## Python SDK (`agent_sdk`)", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_the_readme_sdk_sample_runs(server: Server, agent: Agent, tmp_path: Path) -> None:
    script = tmp_path / "sample.py"
    script.write_text(_sample() + "\nprint('sample done')\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AGENTCTL_URL": server.url,
        "AGENTCTL_CLIENT_ID": agent.client_id,
        "AGENTCTL_CLIENT_SECRET": agent.client_secret or "",
        "XDG_CACHE_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sample done" in done.stdout

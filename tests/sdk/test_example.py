"""The SDK code a newcomer copies runs end to end against a real server, credential from the
environment: examples/refund_agent.py, and the README's Python SDK sample as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fixtures.servers import ROOT
from tests.sdk.conftest import Agent, Server


def _run(
    args: list[str], server: Server, agent: Agent, cache: Path
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AGENTCTL_URL": server.url,
        "AGENTCTL_CLIENT_ID": agent.client_id,
        "AGENTCTL_CLIENT_SECRET": agent.client_secret or "",
        "XDG_CACHE_HOME": str(cache),
    }
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_refund_agent_example(server: Server, agent: Agent, tmp_path: Path) -> None:
    example = str(ROOT / "examples" / "refund_agent.py")
    args = [example, "o-1:40", "o-2:9000", "o-3:40:ap-south-1", "--flush-timeout", "1"]
    done = _run(args, server, agent, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("order=o-1 outcome=refunded refund_id=rf_")
    assert lines[1].startswith("order=o-2 outcome=needs approval approval=")
    assert lines[2].startswith("order=o-3 outcome=denied reasons=")
    assert lines[3].startswith("audit records delivered:")
    assert agent.client_secret not in done.stdout + done.stderr


def test_the_readme_sdk_sample_runs(server: Server, agent: Agent, tmp_path: Path) -> None:
    section = (ROOT / "README.md").read_text().split("## Python SDK (`agent_sdk`)", 1)[1]
    sample = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert sample is not None
    script = tmp_path / "sample.py"
    script.write_text(sample.group(1) + "\nprint('sample done')\n")
    done = _run([str(script)], server, agent, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sample done" in done.stdout

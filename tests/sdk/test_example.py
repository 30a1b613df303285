"""examples/refund_agent.py runs end to end against a real server, credential from the
environment."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.fixtures.servers import ROOT
from tests.sdk.conftest import Agent, Server


def test_refund_agent_example(server: Server, agent: Agent, tmp_path: object) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AGENTCTL_URL": server.url,
        "AGENTCTL_CLIENT_ID": agent.client_id,
        "AGENTCTL_CLIENT_SECRET": agent.client_secret or "",
        "XDG_CACHE_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "refund_agent.py"),
            "o-1:40",
            "o-2:9000",
            "o-3:40:ap-south-1",
            "--flush-timeout",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("order=o-1 outcome=refunded refund_id=rf_")
    assert lines[1].startswith("order=o-2 outcome=needs approval decision=")
    assert lines[2].startswith("order=o-3 outcome=denied reasons=")
    assert lines[3].startswith("audit records delivered:")
    assert agent.client_secret not in done.stdout + done.stderr

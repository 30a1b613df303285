"""Run regopy on untrusted policy in a child process, so a crash costs a child, not the server.

regopy 1.5.2 aborts or segfaults while compiling some valid Rego (for example `with input as
{...}` over a rule that passes input to a builtin: `std::runtime_error: shape rego-localref has
no field rego-refhead`, uncatchable from Python). Validation and the embedded test runner
therefore compile uploaded modules here:

    python -m control_plane.policy._regopy_worker < request.json > response.json

The request is `{"op": "compile", "modules", "data", "evaluate"}` or `{"op": "test",
"directory"}`; the response is the JSON the parent asked for. Anything the policy prints (Rego
`print`, regopy's own reports) goes to stderr: fd 1 is redirected before regopy is imported.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import control_plane

# The directory that contains the `control_plane` package, for the child's import path.
_PACKAGE_ROOT = str(Path(control_plane.__file__).resolve().parent.parent)


class WorkerCrashError(RuntimeError):
    """The child died (signal or abort) or did not answer in time."""


def run_in_worker(request: dict[str, Any], timeout: float) -> Any:
    """Send `request` to a fresh child interpreter and return its decoded answer."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "control_plane.policy._regopy_worker"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        raise WorkerCrashError(f"timed out after {timeout:g}s") from exc
    if proc.returncode != 0:
        raise WorkerCrashError(_describe_exit(proc.returncode, proc.stderr))
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise WorkerCrashError(f"unreadable answer: {proc.stdout[:200]!r}") from exc


def _describe_exit(returncode: int, stderr: str) -> str:
    if returncode < 0:
        try:
            cause = signal.Signals(-returncode).name
        except ValueError:
            cause = f"signal {-returncode}"
    else:
        cause = f"exit status {returncode}"
    what = [line.strip() for line in stderr.splitlines() if "what():" in line]
    tail = what[-1] if what else (stderr.strip().splitlines() or [""])[-1]
    return f"{cause}: {tail[:300]}" if tail else cause


def _main() -> int:
    result_fd = os.dup(1)
    os.dup2(2, 1)  # C++ and Rego print() write to fd 1; keep the answer channel clean
    request = json.loads(sys.stdin.read())
    from control_plane.policy import validation

    if request["op"] == "compile":
        answer: Any = [
            issue.as_dict()
            for issue in validation.regopy_issues_in_process(
                request["modules"], request["data"], evaluate=request["evaluate"]
            )
        ]
    elif request["op"] == "test":
        answer = validation.regopy_tests_in_process(Path(request["directory"])).as_dict()
    else:
        raise SystemExit(f"unknown op {request['op']!r}")
    with os.fdopen(result_fd, "w") as out:
        json.dump(answer, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())

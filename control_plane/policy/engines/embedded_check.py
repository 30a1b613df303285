"""Child process: can the embedded engine build this bundle? A crash costs the child only.

    python -m control_plane.policy.engines.embedded_check < request.json > answer.json

regopy 1.5.2 aborts the whole process compiling some Rego that OPA accepts (`with input as
{...}` over a rule that passes input to a builtin), so `validation` never builds uploaded policy
in the server process. The request is `{"modules", "data", "entrypoints"}`; the answer is
`{"error": null}` or `{"error": "<message>"}`. fd 1 is redirected to stderr before regopy loads,
because regopy and Rego `print` write there.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    request = json.loads(sys.stdin.read())
    from control_plane.policy.engines.base import PolicyLoadError
    from control_plane.policy.engines.embedded import compile_bundle

    error = None
    try:
        compile_bundle(
            request["modules"],
            json.dumps(request["data"], ensure_ascii=False),
            request["entrypoints"],
        )
    except PolicyLoadError as exc:
        error = str(exc)
    with answers:
        json.dump({"error": error}, answers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

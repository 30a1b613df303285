"""``python -m bench``: every benchmark, one after the other."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import (
    audit,
    credentials,
    decisions,
    decisions_openloop,
    federation,
    impact,
    sdk,
    sdk_local,
    shadow,
    workers,
)


def main() -> None:
    here = Path(__file__).parent
    print("== token crypto, in process")
    subprocess.run([sys.executable, str(here / "bench_tokens.py")], check=True)
    print()
    print("== policy engines, in process")
    subprocess.run([sys.executable, str(here / "bench_engines.py")], check=True)
    print()
    print("== credentials over HTTP")
    credentials.main()
    print()
    print("== decisions over HTTP")
    decisions.main()
    print()
    print("== shadow evaluation off vs on (issue 14)")
    shadow.main([])
    print()
    print("== decisions by worker count on PostgreSQL")
    workers.main()
    print()
    print("== the decision hot path against bare OPA, open loop (vegeta)")
    decisions_openloop.main([])
    print()
    print("== the Python SDK")
    sdk.main()
    print()
    print("== the Python SDK in local mode (issue 11)")
    sdk_local.main()
    print()
    print("== federation: OPA sidecar vs the centre, bundle build")
    federation.main([])
    print()
    print("== audit log on PostgreSQL")
    audit.main([])
    print()
    print("== impact analysis: 10,000 stored decisions replayed against a candidate (issue 14)")
    impact.main([])


if __name__ == "__main__":
    main()

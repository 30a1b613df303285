"""Token issuance and verification throughput (issue 3, "what must hold" item 6).

Prints, for each signing algorithm:

- issuance per second through `issue_access_token`, next to bare signing of the same claims with
  the same library (joserfc `jwt.encode` with a prepared key object and registry), and the ratio;
- verification per second through `verify_access_token`, through `verify_access_token_cached`
  on a cache hit, and bare joserfc `jwt.decode` (signature only, no claim checks) for reference.

Each figure is the best of five timed rounds (about `--seconds` in all per measurement, on one
core); rounds of the compared operations alternate so that background load hits both sides.
Nothing is asserted: the numbers depend on the machine.

    python bench/bench_tokens.py [--seconds 1.0] [--alg EdDSA|ES256]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Runnable from a checkout without installing the package (`make bench` uses the installed one).
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from joserfc import jwt  # noqa: E402

from control_plane.crypto.jose import JWS_REGISTRY  # noqa: E402
from control_plane.crypto.jwk import SigningAlg  # noqa: E402
from control_plane.crypto.signing import (  # noqa: E402
    KeyRecord,
    SigningKeyRing,
    generate_signing_key,
)
from control_plane.oauth2.cache import (  # noqa: E402
    VerifiedTokenCache,
    verify_access_token_cached,
)
from control_plane.oauth2.tokens import issue_access_token, verify_access_token  # noqa: E402

ISSUER = "https://control-plane.example"
AUDIENCE = "agent-control-plane"
ROUNDS = 5


def _round(fn: Callable[[], Any], seconds: float) -> float:
    count, batch = 0, 50
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def rates(seconds: float, *fns: Callable[[], Any]) -> list[float]:
    """Operations per second of each function: the best of ROUNDS rounds. Rounds of the
    functions alternate, so a busy neighbour slows all of them alike and ratios stay fair."""
    for fn in fns:
        fn()  # warm up (lazy imports, cached key properties)
    best = [0.0] * len(fns)
    for _ in range(ROUNDS):
        for i, fn in enumerate(fns):
            best[i] = max(best[i], _round(fn, seconds / ROUNDS))
    return best


def bench(alg: SigningAlg, seconds: float) -> list[tuple[str, float | None, str]]:
    key = generate_signing_key(alg)
    created = datetime.fromtimestamp(time.time() - 60, UTC)
    ring = SigningKeyRing([KeyRecord(key.kid, key.alg, key.public_jwk(), created, private_key=key)])
    extra = {"domain": "payments", "version": "1.4.0", "autonomy_level": 2}

    def issue() -> str:
        return issue_access_token(
            ring,
            issuer=ISSUER,
            audience=AUDIENCE,
            subject="0b7e4f9e-6a43-4c38-9b1e-2f1f1d3c9a77",
            client_id="5f3c1c1e-2f77-4d0e-8f55-0d8f9b8e2a10",
            scope=["decisions:create", "audit:write"],
            lifetime_seconds=600,
            extra_claims=extra,
        ).token

    token = issue()
    claims = dict(verify_access_token(ring, token, issuer=ISSUER, audience=AUDIENCE).claims)
    header = {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
    jose_key = key.jose_key
    public = ring.verification_key(key.kid)
    assert public is not None

    def bare_sign() -> str:
        return jwt.encode(header, claims, jose_key, registry=JWS_REGISTRY)

    def verify() -> Any:
        return verify_access_token(ring, token, issuer=ISSUER, audience=AUDIENCE)

    cache = VerifiedTokenCache()

    def verify_cached() -> Any:
        return verify_access_token_cached(cache, ring, token, issuer=ISSUER, audience=AUDIENCE)

    def bare_verify() -> Any:
        return jwt.decode(token, public.jose_key, registry=JWS_REGISTRY)

    issue_rate, bare_rate = rates(seconds, issue, bare_sign)
    verify_rate, cached_rate, bare_verify_rate = rates(seconds, verify, verify_cached, bare_verify)
    return [
        ("issue_access_token", issue_rate, ""),
        ("bare joserfc jwt.encode, same claims", bare_rate, ""),
        ("issuance ratio (ours / bare)", None, f"{issue_rate / bare_rate:.2f}"),
        ("verify_access_token (no cache)", verify_rate, ""),
        ("verify_access_token_cached (hit)", cached_rate, ""),
        ("bare joserfc jwt.decode (signature only)", bare_verify_rate, ""),
        ("token size (bytes)", None, str(len(token))),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--alg", choices=["EdDSA", "ES256"], action="append")
    args = parser.parse_args()
    algs: list[SigningAlg] = args.alg or ["EdDSA", "ES256"]

    print(f"{'alg':<7} {'measurement':<42} {'ops/s':>10} {'us/op':>9}")
    print("-" * 71)
    for alg in algs:
        for name, ops, note in bench(alg, args.seconds):
            if ops is None:
                print(f"{alg:<7} {name:<42} {note:>10}")
            else:
                print(f"{alg:<7} {name:<42} {ops:>10,.0f} {1e6 / ops:>9.1f}")
        print()


if __name__ == "__main__":
    main()

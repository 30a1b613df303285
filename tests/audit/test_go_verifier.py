"""An independent verifier accepts the log: tests/audit/goverifier, a Go program built here
with the Go toolchain (modules from the Go module proxy, pinned by its go.sum), checks the
checkpoints with golang.org/x/mod/sumdb/note and the proofs with
github.com/transparency-dev/merkle. Never skipped in CI (CI=true): no Go there is a failure."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.audit.support import record, send, settle, writer
from tests.conftest import IN_CI

HERE = Path(__file__).parent / "goverifier"


def _go() -> str | None:
    if Path("/usr/local/go/bin/go").exists():
        return "/usr/local/go/bin/go"
    return shutil.which("go")


@pytest.fixture(scope="session")
def goverifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = _go()
    if go is None:
        if IN_CI:
            pytest.fail("CI=true and no Go toolchain: the independent verifier must run in CI")
        pytest.skip("no Go toolchain (install Go to run the independent verifier)")
    binary = tmp_path_factory.mktemp("goverifier") / "goverifier"
    env = {k: v for k, v in os.environ.items() if k != "GOFLAGS"}
    result = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return binary


def _run(binary: Path, data: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"input-{random.randrange(1 << 30)}.json"
    path.write_text(json.dumps(data))
    return subprocess.run(
        [str(binary), str(path)], capture_output=True, text=True, timeout=60, check=False
    )


async def test_go_verifier_accepts_checkpoints_and_proofs(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    goverifier: Path,
    tmp_path: Path,
) -> None:
    me = await writer(client, admin)
    first = [record() for _ in range(6)]
    await send(client, me["headers"], first)
    await settle(app)
    old = (await client.get("/v1/audit/logs/payments/checkpoint", headers=admin)).text
    second = [record() for _ in range(17)]
    await send(client, me["headers"], second)
    r = await client.post(
        "/v1/decisions",
        json={"action": "payments.refund", "resource": {"type": "order", "id": "o-7"}},
        headers=me["headers"],
    )
    assert r.status_code == 200
    await settle(app)
    latest = (await client.get("/v1/audit/logs/payments/checkpoint", headers=admin)).text
    key = (await client.get("/v1/audit/keys", headers=admin)).json()["keys"][0]["verifier_key"]
    consistency = (
        await client.get(
            "/v1/audit/logs/payments/proof/consistency",
            params={"from": 6, "to": 24},
            headers=admin,
        )
    ).json()
    sampled = [*random.Random(9).sample(first + second, 8), first[0], second[-1]]
    records = [
        (await client.get(f"/v1/audit/records/{rec['id']}", headers=admin)).json()
        for rec in sampled
    ]
    data = {
        "verifier_key": key,
        "old_checkpoint": old,
        "checkpoint": latest,
        "consistency": consistency,
        "records": records,
    }
    result = _run(goverifier, data, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OK testserver/audit/payments: 10 inclusion proofs, consistency 6 -> 24" in result.stdout

    # The same verifier refuses what is wrong: a proof hash, a leaf, a signature.
    bad_proof = json.loads(json.dumps(data))
    hashes = bad_proof["records"][0]["proof"]["hashes"]
    hashes[0] = hashes[-1] if hashes[0] != hashes[-1] else "A" * 43 + "="
    assert _run(goverifier, bad_proof, tmp_path).returncode == 1
    bad_consistency = json.loads(json.dumps(data))
    bad_consistency["consistency"]["hashes"].reverse()
    assert _run(goverifier, bad_consistency, tmp_path).returncode == 1
    forged = json.loads(json.dumps(data))
    lines = forged["checkpoint"].split("\n")
    lines[1] = "25"
    forged["checkpoint"] = "\n".join(lines)
    result = _run(goverifier, forged, tmp_path)
    assert result.returncode == 1
    assert "signature" in result.stderr

"""A real `agentctl serve` and `agentctl ARGS...` run in process against it (`cli`).

`--output json` answers are validated against the response schema the OpenAPI document gives
the operation (`Result.json`); a failure must be one line on stderr carrying the problem's code,
with the exit code scripts test (`Result.failed`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from control_plane.cli import main
from tests.fixtures.servers import ROOT, server_env, serving

ADMIN = "acp_op_cli-operator-admin-token-0123456789abcdef"


@cache
def _openapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    return document


def response_schema(operation_id: str) -> dict[str, Any]:
    """The 2xx JSON schema of an operation, with the components its $refs point into."""
    document = _openapi()
    for methods in document["paths"].values():
        for operation in methods.values():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                [ok] = [v for k, v in operation["responses"].items() if k.startswith("2")]
                schema = ok["content"]["application/json"]["schema"]
                return {**schema, "components": document["components"]}
    raise AssertionError(f"no operation {operation_id}")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self, operation_id: str) -> Any:
        """The output, validated against the operation's response schema."""
        assert self.code == 0, self.err
        body = json.loads(self.out)
        errors = [
            str(e)
            for e in jsonschema_rs.validator_for(response_schema(operation_id)).iter_errors(body)
        ]
        assert not errors, f"{operation_id}: {errors}"
        return body

    def failed(self, code: int, problem: str) -> None:
        """Exit `code`, and one line on stderr naming the problem's code."""
        assert self.code == code, (self.code, self.out, self.err)
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert re.match(rf"error: {problem}\b", lines[0]), lines[0]
        assert "Traceback" not in self.err


@pytest.fixture
def cli(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """A running server and a function that runs `agentctl ARGS...` against it. Webhooks to
    loopback receivers are allowed, and the outbox is polled every 50 ms."""
    env = server_env(
        db_url,
        tmp_path,
        AGENTCTL_ADMIN_TOKEN=ADMIN,
        AGENTCTL_AUDIT_CHECKPOINT_SECONDS="0.2",
        AGENTCTL_WEBHOOK_ALLOW_PRIVATE="true",
        AGENTCTL_EVENTS_POLL_SECONDS="0.05",
    )
    with serving(env, tmp_path / "serve.log") as url:
        monkeypatch.setenv("AGENTCTL_URL", url)
        monkeypatch.setenv("AGENTCTL_TOKEN", ADMIN)
        capsys.readouterr()

        def run(*args: str) -> Result:
            code = main(list(args))
            out, err = capsys.readouterr()
            return Result(code, out, err)

        run.url = url  # type: ignore[attr-defined]
        yield run

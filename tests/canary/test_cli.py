"""`agentctl policy shadow ...` and `agentctl policy canary ...` against a real server."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.canary.helpers import BUNDLE, deny_all
from tests.cli.conftest import ADMIN, cli  # noqa: F401  (the fixture)
from tests.fixtures.decisions import REFUND

HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def _agent_headers(url: str) -> dict[str, str]:
    httpx.post(f"{url}/v1/domains", json={"name": "payments"}, headers=HEADERS)
    agent = httpx.post(
        f"{url}/v1/agents",
        json={"name": "bot", "domain": "payments", "owner": "o"},
        headers=HEADERS,
    ).json()
    cred = httpx.post(
        f"{url}/v1/agents/{agent['id']}/credentials",
        json={"scopes": ["decisions:create"]},
        headers=HEADERS,
    ).json()
    r = httpx.post(
        f"{url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(cred["client_id"], cred["client_secret"]),
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.mark.usefixtures("opa_bin")
def test_shadow_and_canary_verbs(cli: Any) -> None:  # noqa: F811
    url = cli.url
    r = httpx.post(f"{url}{BUNDLE}/revisions", json=deny_all(), headers=HEADERS, timeout=60)
    assert r.status_code == 201, r.text
    candidate = r.json()["revision"]
    agent = _agent_headers(url)

    shown = cli("policy", "shadow", "set", str(candidate), "-o", "json").json("policies-set_shadow")
    assert shown["shadow_revision"] == candidate
    assert f"shadow {candidate}" in cli("policy", "shadow", "set", str(candidate)).out
    decision = httpx.post(f"{url}/v1/decisions", json=REFUND, headers=agent).json()
    deadline = time.monotonic() + 20
    while True:
        diffs = cli("policy", "shadow", "diffs", "-o", "json").json("policies-list_shadow_diffs")
        if diffs["data"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [d["decision_id"] for d in diffs["data"]] == [decision["decision_id"]]
    assert decision["decision_id"] in cli("policy", "shadow", "diffs").out
    summary = cli("policy", "shadow", "diffs", "--summary", "-o", "json")
    assert summary.json("policies-summarise_shadow_diffs")["total"] == 1
    assert "total 1" in cli("policy", "shadow", "diffs", "--summary").out
    cleared = cli("policy", "shadow", "clear", "-o", "json").json("policies-clear_shadow")
    assert cleared["shadow_revision"] is None

    started = cli(
        "policy", "canary", "start", str(candidate), "--percent", "10", "--domains", "payments",
        "-o", "json",
    ).json("policies-start_canary")  # fmt: skip
    assert started["canary"] == {"revision": candidate, "percent": 10.0, "domains": ["payments"]}
    served = httpx.post(f"{url}/v1/decisions", json=REFUND, headers=agent).json()
    assert (served["served_by"], served["revision"]) == ("canary", candidate)
    rolled = cli("policy", "canary", "rollback", "-o", "json").json("policies-rollback_canary")
    assert rolled["canary"] is None
    cli("policy", "canary", "rollback").failed(1, "conflict")
    cli("policy", "canary", "start", str(candidate)).failed(2, "")
    cli("policy", "canary", "start", "99", "--percent", "5").failed(3, "not_found")
    assert "canary" in cli("policy", "canary", "start", str(candidate), "--percent", "5").out
    promoted = cli("policy", "canary", "promote", "-o", "json").json("policies-promote_canary")
    assert (promoted["active_revision"], promoted["canary"]) == (candidate, None)

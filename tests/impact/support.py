"""What the impact tests share: a mix of stored decisions and candidate revisions of the
shipped policy that change known rules."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx

from control_plane.policy.bundles import read_policy_dir
from control_plane.policy.defaults import shipped_policy_dir
from tests.fixtures.decisions import decider

BUNDLE = "default"


def shipped() -> tuple[dict[str, str], dict[str, Any]]:
    source = read_policy_dir(shipped_policy_dir())
    modules = {k: v for k, v in source.modules.items() if not k.endswith("_test.rego")}
    return modules, copy.deepcopy(dict(source.data))


def tighter_refunds(threshold: int = 50) -> dict[str, Any]:
    """The shipped policy with one rule tightened: autonomy level 1 asks for approval above
    ``threshold`` (shipped: 100), so refunds of 51..100 turn from allow to require_approval."""
    modules, data = shipped()
    data["authz"]["autonomy"]["levels"][1]["approval_above_amount"] = threshold
    return {"modules": modules, "data": data}


def no_invoice_grant() -> dict[str, Any]:
    """The shipped policy without the payments domain's ``payments.invoice.*`` grant."""
    modules, data = shipped()
    grants = data["authz"]["grants"]["domains"]["payments"]
    grants.remove("payments.invoice.*")
    return {"modules": modules, "data": data}


def refund_reads_for_all() -> dict[str, Any]:
    """The shipped policy granting ``payments.refund.read`` to the whole payments domain
    (a loosening: other-bot's denied reads become allows)."""
    modules, data = shipped()
    data["authz"]["grants"]["domains"]["payments"].append("payments.refund.read")
    return {"modules": modules, "data": data}


async def upload(client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]) -> int:
    r = await client.post(f"/v1/policies/{BUNDLE}/revisions", json=body, headers=admin)
    assert r.status_code == 201, r.text
    number: int = r.json()["revision"]
    return number


def requests(n: int) -> list[tuple[str, dict[str, Any]]]:
    """``n`` decision requests, as (who, body): refunds of amounts 0..199 (level 1: approval
    above 100), invoice reads, refund reads by an agent without the grant (deny), a few with a
    card number (redacted on record)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        kind = i % 4
        if kind in (0, 1):
            resource: dict[str, Any] = {
                "type": "order",
                "id": f"o-{i}",
                "amount": (i * 7) % 200,
                "region": "eu-west-1",
            }
            if i % 10 == 0:
                resource["card_number"] = "4111111111111111"
            out.append(("refund", {"action": "payments.refund", "resource": resource}))
        elif kind == 2:
            out.append(
                (
                    "refund",
                    {
                        "action": "payments.invoice.read",
                        "resource": {"type": "invoice", "id": f"i-{i}", "region": "eu-west-1"},
                    },
                )
            )
        else:
            out.append(
                (
                    "other",
                    {
                        "action": "payments.refund.read",
                        "resource": {"type": "order", "id": f"o-{i}", "region": "eu-west-1"},
                    },
                )
            )
    return out


async def store_decisions(
    client: httpx.AsyncClient, admin: dict[str, str], n: int
) -> dict[str, dict[str, Any]]:
    """Ask for ``n`` decisions (``requests(n)``); returns {decision id: request body + answer}."""
    agents = {
        "refund": await decider(client, admin, name="refund-bot"),
        "other": await decider(client, admin, name="other-bot", create_the_domain=False),
    }
    out: dict[str, dict[str, Any]] = {}
    for who, body in requests(n):
        r = await client.post("/v1/decisions", json=body, headers=agents[who]["headers"])
        assert r.status_code == 200, r.text
        answer = r.json()
        out[answer["decision_id"]] = {"request": body, "answer": answer}
    return out


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)

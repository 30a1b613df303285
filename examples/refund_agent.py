"""A small refund agent governed by the control plane.

It registers nothing itself: an operator registered the ``refund-bot`` agent and gave it a
credential (see the README). It reads that credential from the environment:

    export AGENTCTL_URL=http://127.0.0.1:8080
    export AGENTCTL_CLIENT_ID=...  AGENTCTL_CLIENT_SECRET=...
    python examples/refund_agent.py o-1001:40 o-1002:9000 o-1003:40:ap-south-1

For each ``order:amount[:region]`` it asks before refunding (``governed()``); allowed refunds
run and are recorded in the audit log with their outcome, the card number redacted as the
policy obliges; denials and approvals needed are reported, and nothing runs.
"""

from __future__ import annotations

import argparse
import logging
import uuid
from typing import Any

from agent_sdk import ApprovalRequired, Client, Denied

log = logging.getLogger("refund_agent")


def payment_provider_refund(order_id: str, amount: float, card_number: str) -> str:
    """Stands in for the payment provider's API: returns a refund id."""
    return f"rf_{uuid.uuid5(uuid.NAMESPACE_URL, f'{order_id}/{amount}').hex[:12]}"


def refund(client: Client, order_id: str, amount: float, region: str) -> dict[str, Any]:
    resource = {
        "type": "order",
        "id": order_id,
        "amount": amount,
        "region": region,
        "card_number": "4111111111111111",
    }
    try:
        with client.governed("payments.refund", resource, inputs={"amount": amount}) as act:
            act.rationale = "customer reported a damaged item"
            refund_id = payment_provider_refund(order_id, amount, resource["card_number"])
            act.outputs["refund_id"] = refund_id
            return {
                "order": order_id,
                "outcome": "refunded",
                "refund_id": refund_id,
                "audit_record": str(act.record_id),
            }
    except ApprovalRequired as exc:
        return {"order": order_id, "outcome": "needs approval", "approval": str(exc.approval_id)}
    except Denied as exc:
        return {"order": order_id, "outcome": "denied", "reasons": exc.decision.reasons}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("orders", nargs="+", help="order:amount[:region]")
    parser.add_argument(
        "--flush-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the audit records to be delivered",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with Client(audit_timeout=args.flush_timeout) as client:  # credential from the environment
        for spec in args.orders:
            order_id, amount, *rest = spec.split(":")
            result = refund(client, order_id, float(amount), rest[0] if rest else "eu-west-1")
            print(" ".join(f"{k}={v}" for k, v in result.items()))
        delivered = client.flush(timeout=args.flush_timeout)
        print(f"audit records delivered: {delivered} (pending {client.pending()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

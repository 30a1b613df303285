"""The closed set of event types, each with a version suffix, and the JSON Schema of each.

A type's ``data`` schema is committed under ``openapi/events/<type>.json``
(``agentctl openapi`` writes them; a test fails on drift). A new field is a compatible change
within a version; removing or retyping one is a new ``.v2`` type.
"""

from __future__ import annotations

from typing import Any, Final

_UUID: Final = {"type": "string", "format": "uuid"}
_STR: Final = {"type": "string"}
_TIME: Final = {"type": "string", "format": "date-time"}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    props = {**required, **(optional or {})}
    return {
        "type": "object",
        "properties": props,
        "required": sorted(required),
        "additionalProperties": True,
    }


_AGENT = {"agent_id": _UUID, "domain": _STR}

SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "agent.registered.v1": _obj({**_AGENT, "name": _STR, "owner": _STR}),
    "agent.suspended.v1": _obj({**_AGENT, "by": _STR}, {"reason": {"enum": ["agent", "domain"]}}),
    "agent.resumed.v1": _obj({**_AGENT, "by": _STR}, {"reason": {"enum": ["agent", "domain"]}}),
    "domain.suspended.v1": _obj({"domain": _STR, "by": _STR, "agents": {"type": "integer"}}),
    "domain.resumed.v1": _obj({"domain": _STR, "by": _STR}),
    "agent.version.activated.v1": _obj({**_AGENT, "version_id": _UUID, "version": _STR}),
    "credential.created.v1": _obj({**_AGENT, "client_id": _UUID}),
    "credential.revoked.v1": _obj({**_AGENT, "client_id": _UUID}),
    "policy.revision.activated.v1": _obj({"bundle": _STR, "revision": {"type": "integer"}}),
    "policy.shadow.set.v1": _obj({"bundle": _STR, "revision": {"type": "integer"}, "by": _STR}),
    "policy.shadow.cleared.v1": _obj({"bundle": _STR, "revision": {"type": "integer"}, "by": _STR}),
    "policy.canary.started.v1": _obj(
        {
            "bundle": _STR,
            "revision": {"type": "integer"},
            "percent": {"type": "number"},
            "domains": {"type": "array", "items": _STR},
            "by": _STR,
        }
    ),
    "policy.canary.promoted.v1": _obj(
        {"bundle": _STR, "revision": {"type": "integer"}, "by": _STR}
    ),
    "policy.canary.rolled_back.v1": _obj(
        {"bundle": _STR, "revision": {"type": "integer"}, "by": _STR}
    ),
    "decision.denied.v1": _obj(
        {**_AGENT, "decision_id": _UUID, "action": _STR, "reasons": {"type": "array"}}
    ),
    "approval.requested.v1": _obj(
        {**_AGENT, "approval_id": _UUID, "decision_id": _UUID, "action": _STR, "expires_at": _TIME}
    ),
    "approval.resolved.v1": _obj(
        {**_AGENT, "approval_id": _UUID, "verdict": {"enum": ["approved", "denied"]}, "by": _STR}
    ),
    "budget.exceeded.v1": _obj(
        {**_AGENT, "decision_id": _UUID, "scope": _STR, "window": _STR},
        {"retry_after_seconds": {"type": "integer"}},
    ),
    "audit.checkpoint.v1": _obj({"domain": _STR, "size": {"type": "integer"}}),
}

TYPES: Final = frozenset(SCHEMAS)


def cloudevent_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema (2020-12) of a whole CloudEvents 1.0 JSON event of ``event_type``."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:agentctl:event:{event_type}",
        "title": event_type,
        "type": "object",
        "required": ["specversion", "id", "source", "type", "time", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": _UUID,
            "source": _STR,
            "type": {"const": event_type},
            "subject": _STR,
            "time": _TIME,
            "datacontenttype": {"const": "application/json"},
            "data": SCHEMAS[event_type],
        },
    }

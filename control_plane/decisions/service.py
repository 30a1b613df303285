"""Deciding on an agent's action and recording the decision.

The agent's identity, domain, status, autonomy level and version come from its verified token
and the registry, never from the request body. The decision row is written in the same
transaction that produces the answer, so an answer the agent receives is always on record.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from copy import deepcopy
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.agents import service as agents
from control_plane.auth.principals import Capability, OperatorPrincipal
from control_plane.decisions import repository
from control_plane.decisions.schemas import DecisionRequest, DecisionResult
from control_plane.kit.errors import FieldError, ValidationFailed
from control_plane.kit.time import utcnow
from control_plane.models import Decision
from control_plane.oauth2.agent_auth import AgentPrincipal
from control_plane.policy.engines import EngineResult, InputLimits, InvalidInputError, encode_input
from control_plane.policy.runtime import PolicyRuntime


def _agent_document(principal: AgentPrincipal, version: Any) -> dict[str, Any]:
    agent = principal.agent
    return {
        "id": str(agent.id),
        "name": agent.name,
        "domain": agent.domain,
        "status": agent.status,
        "autonomy_level": agent.autonomy_level,
        "labels": dict(agent.labels),
        "version": (
            {"id": str(version.id), "version": version.version, "state": version.state}
            if version is not None
            else None
        ),
    }


REDACTED = "[REDACTED]"


def redact(document: dict[str, Any], obligations: Sequence[Any]) -> dict[str, Any]:
    """A copy of ``document`` with every field named by a ``redact`` obligation replaced.

    Paths are dotted and rooted at the input (``resource.card_number``); only the parts of the
    input that are stored (``resource``) are touched here.
    """
    out = deepcopy(document)
    for obligation in obligations:
        if not isinstance(obligation, dict) or obligation.get("type") != "redact":
            continue
        for path in obligation.get("fields") or []:
            if not isinstance(path, str):
                continue
            parts = path.split(".")
            node: Any = out
            for part in parts[:-1]:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and parts[-1] in node:
                node[parts[-1]] = REDACTED
    return out


def _stored_resource(resource: dict[str, Any], result: EngineResult) -> dict[str, Any]:
    """What the record keeps of the resource: redacted as the policy's obligations say, or, when
    the decision failed closed (no obligations to go by), only its type and id."""
    if result.failure is not None:
        return {"type": resource.get("type"), "id": resource.get("id")}
    redacted: dict[str, Any] = redact({"resource": resource}, result.obligations)["resource"]
    return redacted


async def decide(
    session: AsyncSession,
    runtime: PolicyRuntime,
    principal: AgentPrincipal,
    body: DecisionRequest,
    limits: InputLimits,
) -> DecisionResult:
    started = time.perf_counter()
    version = await agents.active_version(session, principal.agent.id)
    context = dict(body.context)
    # Time windows must not trust the agent's clock: the control plane's time is the time.
    if "time" in context:
        context["client_time"] = context["time"]
    context["time"] = utcnow().isoformat(timespec="seconds").replace("+00:00", "Z")
    input_doc: dict[str, Any] = {
        "agent": _agent_document(principal, version),
        "action": body.action,
        "resource": body.resource.model_dump(),
        "context": context,
    }
    try:
        encoded = encode_input(input_doc, limits)
    except InvalidInputError as exc:
        raise ValidationFailed(
            f"The decision input is too large or too deep: {exc}.",
            errors=[FieldError(pointer="/body", detail=str(exc))],
        ) from None
    result = await runtime.decide(session, input_doc)
    decision = Decision(
        agent_id=principal.agent.id,
        domain=principal.agent.domain,
        client_id=principal.client_id,
        version_id=version.id if version is not None else None,
        version=version.version if version is not None else None,
        action=body.action,
        resource=_stored_resource(input_doc["resource"], result),
        input_digest="sha256:" + hashlib.sha256(encoded.encode()).hexdigest(),
        effect=result.effect,
        allow=result.allow,
        reasons=list(result.reasons),
        obligations=[dict(o) for o in result.obligations],
        bundle=runtime.bundle,
        revision=int(result.revision) if result.revision and result.revision.isdigit() else None,
        engine=result.engine,
        failure=result.failure,
        latency_ms=(time.perf_counter() - started) * 1000,
    )
    await repository.add(session, decision)
    return DecisionResult(
        decision_id=decision.id,
        effect=decision.effect,
        allow=decision.allow,
        reasons=decision.reasons,
        obligations=decision.obligations,
        bundle=decision.bundle,
        revision=decision.revision,
        engine=decision.engine,
    )


async def list_decisions(
    session: AsyncSession,
    who: OperatorPrincipal,
    *,
    agent_id: uuid.UUID | None,
    effect: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    after: uuid.UUID | None,
    limit: int,
) -> Sequence[Decision]:
    who.require(Capability.decisions_read)
    return await repository.list_page(
        session,
        visible=who.visible_domains(),
        agent_id=agent_id,
        effect=effect,
        action=action,
        since=since,
        until=until,
        after=after,
        limit=limit,
    )

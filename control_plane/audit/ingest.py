"""Agents' records in: ``POST /v1/audit/records``.

Each record is checked (RFC 8785 can encode its free-form parts), redacted (the domain's list and
the obligations of the decision it names), encoded and inserted with its content MAC; the answer
is a status per record (stored, duplicate, conflict). Only durable rows are written: the
sequencer (``worker``) gives them their place in the log after commit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import uuid
from typing import Any, Literal

import orjson
from pydantic import TypeAdapter
from sqlmodel.ext.asyncio.session import AsyncSession

from control_plane.audit import repository
from control_plane.audit.log import INT_MAX, MAX_DEPTH, as_unicode, ijson_problem
from control_plane.audit.records import (
    AuditContext,
    agent_document,
    encode,
    iso,
    parse_patterns,
    redacted,
)
from control_plane.audit.schemas import (
    AuditBatch,
    AuditBatchResult,
    AuditRecordIn,
)
from control_plane.kit.errors import FieldError, ValidationFailed
from control_plane.kit.redaction import RedactionPattern, obligation_patterns
from control_plane.kit.routing import after_commit
from control_plane.kit.time import utcnow
from control_plane.oauth2.agent_auth import AgentPrincipal
from control_plane.observability import metrics

_RECORDS = TypeAdapter(list[AuditRecordIn])
Outcome = Literal["stored", "duplicate", "conflict"]


async def ingest(
    session: AsyncSession, principal: AgentPrincipal, batch: AuditBatch, ctx: AuditContext
) -> AuditBatchResult:
    """Store a batch of records; a status per record (stored, duplicate, conflict)."""
    agent = principal.agent
    records = batch.records
    # One walk per record over the free-form parts (the rest is typed): whether RFC 8785 can
    # encode them, and whether they are plain (no float, no key beyond U+FFFF), for which
    # orjson's bytes are the JCS and the fingerprint encodings without a further walk.
    shapes = [_free_form_shape(rec) for rec in records]
    if BAD in shapes:
        errors: list[FieldError] = []
        for i, rec in enumerate(records):
            where = f"/body/records/{i}"
            problem = (
                ijson_problem(rec.inputs, f"{where}/inputs", 1)
                or ijson_problem(rec.outputs, f"{where}/outputs", 1)
                or ijson_problem(rec.resource.model_extra or {}, f"{where}/resource", 1)
            )
            if problem is not None:
                errors.append(FieldError(pointer=problem[0], detail=problem[1]))
        raise ValidationFailed("Some records cannot be canonicalised (RFC 8785).", errors=errors)

    version, domain_patterns = await repository.ingest_state(session, agent.id)
    agent_doc = agent_document(principal, version)
    decision_ids = list({r.decision_id for r in records if r.decision_id is not None})
    obligations = await repository.decision_obligations(session, decision_ids, agent.id)
    now = utcnow()
    received_at = iso(now)
    # Parsed once per batch: the domain's list, and per decision its obligations added to it.
    domain_only = parse_patterns(domain_patterns)
    patterns_of: dict[uuid.UUID, list[RedactionPattern]] = {}
    prefix = [str(agent.id), agent.domain]
    key = ctx.redaction_key
    # HMAC keyed once per batch: a copy of the keyed state per record skips the key's two
    # compression blocks (a quarter of ``hmac.digest``'s time for these short messages).
    keyed = hmac.new(key, digestmod=hashlib.sha256)
    dumped = json_values(records)
    timestamps: dict[str, str] = {}  # by the submitted text (a str hashes faster)

    macs: dict[uuid.UUID, str] = {}
    outcome: dict[int, Outcome] = {}
    rows: list[dict[str, Any]] = []
    for i, rec in enumerate(records):
        plain = shapes[i] == PLAIN
        values = dumped[i]
        content, fingerprint = _content(values, prefix, plain=plain)
        mac_state = keyed.copy()
        mac_state.update(fingerprint)
        mac = mac_state.hexdigest()
        if rec.id in macs:  # the same id twice in one batch
            outcome[i] = "duplicate" if macs[rec.id] == mac else "conflict"
            continue
        macs[rec.id] = mac
        if rec.decision_id is None:
            patterns = domain_only
        else:
            found = patterns_of.get(rec.decision_id)
            if found is None:
                own = obligation_patterns(obligations.get(rec.decision_id, []))
                found = patterns_of[rec.decision_id] = parse_patterns([*domain_patterns, *own])
            patterns = found
        sensitive = {
            "resource": content["resource"],
            "inputs": content["inputs"],
            "outputs": content["outputs"],
            "rationale": content["rationale"],
        }
        if patterns:
            sensitive = redacted(sensitive, patterns, key)
        status = values["status"]
        timestamp = timestamps.get(values["timestamp"])
        if timestamp is None:
            timestamp = timestamps[values["timestamp"]] = iso(rec.timestamp)
        stored = {
            "id": content["id"],
            "kind": "action",
            "domain": agent.domain,
            "agent": agent_doc,
            "timestamp": timestamp,
            "action": rec.action,
            **sensitive,
            "status": status,
            "decision_id": content["decision_id"],
            "trace_id": rec.trace_id,
            "traceparent": rec.traceparent,
            "parent_id": content["parent_id"],
            "received_at": received_at,
        }
        data = encode(stored, f"/body/records/{i}", plain=plain and content is values)
        rows.append(
            {
                "id": rec.id,
                "action": rec.action,
                "status": status,
                "decision_id": rec.decision_id,
                "trace_id": rec.trace_id,
                "timestamp": rec.timestamp,
                "content_mac": mac,
                "record": data.decode("utf-8"),
            }
        )
    inserted = await repository.insert_batch(
        session, rows, domain=agent.domain, agent_id=agent.id, kind="action", created_at=now
    )
    existing = await repository.content_macs(
        session, [r["id"] for r in rows if r["id"] not in inserted]
    )
    results: list[dict[str, Any]] = []
    for i, rec in enumerate(records):
        said = outcome.get(i)
        if said is None:
            if rec.id in inserted:
                said = "stored"
            else:
                said = "duplicate" if existing.get(rec.id) == macs[rec.id] else "conflict"
        results.append({"id": rec.id, "status": said})
    n_stored = len(inserted)
    after_commit(session, lambda: metrics.observe_audit_ingested(n_stored, "ingest"))
    # Validated from plain dicts in one call: a third of the time of one ``model_construct``
    # per record, which runs in Python.
    return AuditBatchResult.model_validate({"records": results})


_FREE_FORM = {"__all__": {"resource", "inputs", "outputs"}}


def json_values(records: list[AuditRecordIn]) -> list[dict[str, Any]]:
    """The records as submitted, as JSON values: what ``dump_python(mode="json")`` gives (a
    record's content MAC is taken over it) for records whose free-form parts are not ``BAD``
    (pydantic would write a NaN as null), without its cost. The typed fields are dumped by
    pydantic, in one call for the batch; the free-form ones (``resource``'s extra attributes,
    ``inputs``, ``outputs``) are JSON values already, parsed from the body, and are used as
    they are, not copied (pydantic's copy was two thirds of the dump's time). Nothing here
    changes them: redaction and ``as_unicode`` make copies."""
    out: list[dict[str, Any]] = _RECORDS.dump_python(records, mode="json", exclude=_FREE_FORM)
    for rec, values in zip(records, out, strict=True):
        resource = rec.resource
        extra = resource.model_extra or {}
        values["resource"] = {"type": resource.type, "id": resource.id, **extra}
        values["inputs"] = rec.inputs
        values["outputs"] = rec.outputs
    return out


def _content(
    content: dict[str, Any], prefix: list[str], *, plain: bool
) -> tuple[dict[str, Any], bytes]:
    """The record as submitted (JSON values, lone surrogates replaced) and the bytes its
    content MAC is taken over: any deterministic encoding tells retries apart; this one is
    ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True)``'s, unchanged so
    that retries of records stored earlier still match. orjson writes the same bytes for a
    plain value (no float: the two write some differently) whose text is ASCII without DEL
    (json escapes DEL and everything beyond ASCII; orjson refuses lone surrogates); anything
    else is encoded by json itself. tests/audit/test_ingest_encoding.py checks the two agree."""
    if plain:
        try:
            fast = orjson.dumps([*prefix, content], option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass
        else:
            if fast.isascii() and b"\x7f" not in fast:
                return content, fast

    def text(value: dict[str, Any]) -> bytes:
        return json.dumps(
            [*prefix, value], sort_keys=True, separators=(",", ":"), ensure_ascii=True
        ).encode()

    fingerprint = text(content)
    # ensure_ascii writes every character beyond U+FFFF as a surrogate pair and a lone surrogate
    # as itself, both "\udXXX"; without one, no text holds a surrogate and ``as_unicode`` (a
    # full copy) would change nothing.
    if b"\\ud" in fingerprint:
        content = as_unicode(content)
        fingerprint = text(content)
    return content, fingerprint


PLAIN, FLOATS, BAD = 0, 1, 2


def _free_form_shape(rec: AuditRecordIn) -> int:
    """``BAD`` when RFC 8785 cannot encode the record's free-form parts (``ijson_problem`` then
    names where), ``FLOATS`` when they hold a float or an object key beyond U+FFFF, else
    ``PLAIN``."""
    return max(
        _shape(rec.inputs, 1), _shape(rec.outputs, 1), _shape(rec.resource.model_extra or {}, 1)
    )


def _shape(node: Any, level: int) -> int:
    """``_free_form_shape`` of one value at nesting ``level`` (1: a top-level field). Scalars
    in a container are checked in its loop, not by a call each (a third of the time this walk
    took, once per record)."""
    if level > MAX_DEPTH:
        return BAD
    kind = type(node)
    if kind is dict:
        worst = PLAIN
        for name in node:
            if type(name) is not str:
                return BAD
            if not name.isascii() and max(name) > "\uffff":
                worst = FLOATS
        items: Any = node.values()
    elif kind is list:
        worst = PLAIN
        items = node
    else:
        return _scalar_shape(node)
    if level >= MAX_DEPTH:  # its items nest deeper than MAX_DEPTH
        return BAD if node else worst
    for item in items:
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if not -INT_MAX <= item <= INT_MAX:
                return BAD
        elif kind is float:
            if not math.isfinite(item):
                return BAD
            worst = FLOATS
        elif kind is dict or kind is list:
            shape = _shape(item, level + 1)
            if shape == BAD:
                return BAD
            if shape > worst:
                worst = shape
        else:
            return BAD  # anything else: ijson_problem decides
    return worst


def _scalar_shape(node: Any) -> int:
    kind = type(node)
    if kind is str or kind is bool or node is None:
        return PLAIN
    if kind is int:
        return PLAIN if -INT_MAX <= node <= INT_MAX else BAD
    if kind is float:
        return FLOATS if math.isfinite(node) else BAD
    return BAD

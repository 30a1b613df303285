"""The audit log's HTTP API: agents send records; operators read them with their proofs,
fetch checkpoints and keys, verify and export the logs."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import ValidationError

from control_plane.audit import reading, service, verification
from control_plane.audit.schemas import (
    AuditBatch,
    AuditBatchResult,
    AuditRecordPublic,
    AuditRecordSummary,
    CheckpointPublic,
    ConsistencyProof,
    InclusionProof,
    RecordStatus,
    RedactionList,
    RedactionListPublic,
    VerifierKeys,
    VerifyResult,
)
from control_plane.audit.trees import LogTrees
from control_plane.auth.dependencies import CurrentOperator
from control_plane.kit.errors import error_responses
from control_plane.kit.openapi_doc import schema_ref
from control_plane.kit.pagination import Page, Pagination
from control_plane.kit.router import Router
from control_plane.kit.routing import Session, idempotent
from control_plane.kit.schemas import NAME_PATTERN, RFC3339DateTime
from control_plane.kit.time import aware
from control_plane.oauth2.agent_auth import AgentPrincipal, require_scope
from control_plane.state import app_state

router = Router(tag="audit", prefix="/v1/audit", errors=(401, 403, 422))

_writer = require_scope("audit:write")
Writer = Annotated[AgentPrincipal, Depends(_writer)]
DomainName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)]
OptionalDomain = Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=63)]
Size = Annotated[int, Query(ge=0, le=2**62)]


def _ctx(request: Request) -> service.AuditContext:
    return app_state(request.app).audit_context


def _trees(request: Request) -> LogTrees:
    return app_state(request.app).audit_trees


def _kek(request: Request) -> str:
    return app_state(request.app).kek


def _utc(value: datetime | None) -> datetime | None:
    # RFC3339DateTime refused a time with no UTC equivalent (422), so this cannot overflow.
    return None if value is None else aware(value)


def _json_media(content_type: str | None) -> bool:
    """FastAPI's rule for a JSON body: no Content-Type, application/json or application/*+json."""
    if not content_type:
        return True
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


async def _batch(request: Request) -> AuditBatch:
    """The body, parsed and validated in one pass by pydantic's JSON parser (a batch of 1,000
    records: stdlib ``json.loads`` and then validation, as FastAPI does, took 3 times as long).
    Where that parser refuses what ``json.loads`` takes (lone surrogates, a BOM, other UTF
    encodings) or the body is invalid, FastAPI's own way runs, so answers and errors are the
    ones FastAPI gives (422, pointers under /body). Runs after authentication."""
    raw = await request.body()
    json_media = _json_media(request.headers.get("content-type"))
    if raw and json_media:
        try:
            return AuditBatch.model_validate_json(raw)
        except ValidationError:
            pass
    body: Any = raw
    if not raw:
        body = None
    elif json_media:
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", exc.pos),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": exc.msg},
                    }
                ]
            ) from None
        except (UnicodeDecodeError, RecursionError) as exc:
            # Not UTF-8/16/32 text, or nested past Python's recursion limit: FastAPI's own 400,
            # which kit.errors words by its cause.
            raise HTTPException(400, "There was an error parsing the body") from exc
    if body is None:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    try:
        return AuditBatch.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None


_RECORDS_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": schema_ref(AuditBatch)}},
    }
}


@router.post(
    "/records",
    # Each record's id already makes a retry safe; an Idempotency-Key also replays the answer.
    dependencies=[idempotent(_writer)],
    responses=error_responses(409),
    openapi_extra=_RECORDS_BODY,
)
async def create_records(
    request: Request,
    agent: Writer,
    session: Session,
    body: Annotated[AuditBatch, Depends(_batch)],
) -> AuditBatchResult:
    """Record what the calling agent did (agent token, audit:write); a status per record."""
    return await service.ingest(session, agent, body, _ctx(request))


@router.get("/records")
async def list_records(
    who: CurrentOperator,
    session: Session,
    page: Pagination,
    domain: OptionalDomain = None,
    agent_id: uuid.UUID | None = None,
    action: Annotated[str | None, Query(max_length=200)] = None,
    status: RecordStatus | None = None,
    decision_id: uuid.UUID | None = None,
    trace_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{32}$")] = None,
    since: Annotated[RFC3339DateTime | None, Query(description="At or after (RFC 3339).")] = None,
    until: Annotated[RFC3339DateTime | None, Query(description="Before (RFC 3339).")] = None,
) -> Page[AuditRecordSummary]:
    """List the audit records visible to the caller, by id."""
    items = await reading.list_records(
        session,
        who,
        domain=domain,
        agent_id=agent_id,
        action=action,
        status=status.value if status else None,
        decision_id=decision_id,
        trace_id=trace_id,
        since=_utc(since),
        until=_utc(until),
        after=page.after,
        limit=page.limit,
    )
    return Page[AuditRecordSummary].of(items, page.limit)


@router.get("/records/{record_id}", responses=error_responses(404))
async def get_record(
    record_id: uuid.UUID, request: Request, who: CurrentOperator, session: Session
) -> AuditRecordPublic:
    """An audit record with its place in the log and, once sequenced, its inclusion proof."""
    return await reading.get_record(session, who, record_id, _trees(request))


@router.get(
    "/logs/{domain}/checkpoint",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "C2SP tlog-checkpoint signed note"},
        **error_responses(404),
    },
)
async def latest_checkpoint(domain: DomainName, who: CurrentOperator, session: Session) -> str:
    """The latest signed checkpoint of the domain's log (C2SP tlog-checkpoint)."""
    return await reading.latest_checkpoint_note(session, who, domain)


@router.get("/checkpoints")
async def list_checkpoints(
    who: CurrentOperator, session: Session, page: Pagination, domain: OptionalDomain = None
) -> Page[CheckpointPublic]:
    """The history of signed checkpoints, oldest first."""
    items = await reading.list_checkpoints(
        session, who, domain=domain, after=page.after, limit=page.limit
    )
    return Page[CheckpointPublic].of(items, page.limit)


@router.get(
    "/logs/{domain}/proof/inclusion",
    responses=error_responses(404),
)
async def prove_inclusion(
    domain: DomainName,
    request: Request,
    who: CurrentOperator,
    session: Session,
    index: Size,
    size: Size,
) -> InclusionProof:
    """RFC 9162 inclusion proof of the leaf at ``index`` in the tree of ``size`` leaves."""
    return await reading.inclusion_proof(session, who, _trees(request), domain, index, size)


@router.get(
    "/logs/{domain}/proof/consistency",
    responses=error_responses(404),
)
async def prove_consistency(
    domain: DomainName,
    request: Request,
    who: CurrentOperator,
    session: Session,
    first: Annotated[int, Query(alias="from", ge=0, le=2**62)],
    to: Size,
) -> ConsistencyProof:
    """RFC 9162 consistency proof between the trees of sizes ``from`` and ``to``."""
    return await reading.consistency_proof(session, who, _trees(request), domain, first, to)


@router.get("/keys", responses=error_responses(404))
async def list_keys(
    request: Request, who: CurrentOperator, session: Session, domain: OptionalDomain = None
) -> VerifierKeys:
    """The checkpoint verifier keys, in note verifier-key form, one per log."""
    return await reading.verifier_keys(session, who, _ctx(request), _kek(request), domain)


@router.get("/verify", responses=error_responses(404))
async def verify(
    request: Request, who: CurrentOperator, session: Session, domain: OptionalDomain = None
) -> VerifyResult:
    """Recompute every visible log from its stored leaves against its signed checkpoints."""
    return await verification.verify_logs(session, who, _ctx(request), _kek(request), domain)


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/jsonl": {}},
            "description": 'JSON Lines: {"index", "leaf_hash", "record"} per leaf, in order.',
        },
        **error_responses(404),
    },
)
async def export(
    request: Request,
    who: CurrentOperator,
    session: Session,
    domain: Annotated[str, Query(pattern=NAME_PATTERN, max_length=63)],
) -> StreamingResponse:
    """Stream the domain's log as JSON Lines; ``X-Audit-Log-Size`` gives the leaves to expect."""
    size = await verification.export_size(session, who, domain)
    return StreamingResponse(
        verification.export_lines(app_state(request.app).database.read_sessionmaker, domain, size),
        media_type="application/jsonl",
        headers={"X-Audit-Log-Size": str(size)},
    )


@router.get(
    "/logs/{domain}/redaction",
    responses=error_responses(404),
)
async def get_redaction(
    domain: DomainName, who: CurrentOperator, session: Session
) -> RedactionListPublic:
    """The fields redacted from every audit record of the domain."""
    fields = await service.get_redaction_list(session, who, domain)
    return RedactionListPublic(domain=domain, fields=fields)


@router.put(
    "/logs/{domain}/redaction",
    responses=error_responses(404),
)
async def put_redaction(
    domain: DomainName, body: RedactionList, who: CurrentOperator, session: Session
) -> RedactionListPublic:
    """Replace the domain's redaction list (applies to records received from now on)."""
    fields = await service.put_redaction_list(session, who, domain, body.fields)
    return RedactionListPublic(domain=domain, fields=fields)

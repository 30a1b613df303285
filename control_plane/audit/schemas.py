"""Request and response models of the audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from control_plane.kit.schemas import RequestModel, ResponseModel, in_utc_range

MAX_RECORDS_PER_BATCH = 1000

Action = Annotated[
    str,
    StringConstraints(strict=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:*/-]{0,199}$"),
    Field(description="What the agent did, e.g. payments.refund.", examples=["payments.refund"]),
]


def _rfc3339_text(value: Any) -> Any:
    # pydantic would also take numbers (Unix time); the contract is RFC 3339 text.
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(in_utc_range)]


class RecordStatus(StrEnum):
    succeeded = "succeeded"
    failed = "failed"
    compensated = "compensated"
    cancelled = "cancelled"


class AuditResource(RequestModel):
    """What the action was on: a type and an id, plus any other attributes."""

    model_config = ConfigDict(extra="allow")
    allow_nul: ClassVar[bool] = True

    type: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]
    id: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=500)]


class AuditRecordIn(RequestModel):
    """One action an agent took. Who took it (agent, domain, version, model) comes from the
    token and the registry, never from here."""

    allow_nul: ClassVar[bool] = True

    id: uuid.UUID = Field(description="Chosen by the client; the idempotency key of the record.")
    timestamp: Timestamp = Field(description="When the action happened (RFC 3339).")
    action: Action
    resource: AuditResource
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    rationale: Annotated[str, StringConstraints(strict=True, max_length=10_000)] | None = None
    status: RecordStatus
    decision_id: uuid.UUID | None = None
    trace_id: Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9a-f]{32}$")] | None = (
        None
    )
    traceparent: (
        Annotated[
            str,
            StringConstraints(
                strict=True, pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
            ),
        ]
        | None
    ) = Field(default=None, description="W3C Trace Context traceparent header value.")
    parent_id: uuid.UUID | None = Field(
        default=None, description="The record this one compensates, for compensating actions."
    )

    @model_validator(mode="after")
    def _trace_ids_agree(self) -> Self:
        if self.traceparent is not None:
            from_parent = self.traceparent.split("-")[1]
            if self.trace_id is not None and self.trace_id != from_parent:
                raise ValueError("trace_id differs from the trace id in traceparent")
            self.trace_id = from_parent
        return self


class AuditBatch(RequestModel):
    records: list[AuditRecordIn] = Field(min_length=1, max_length=MAX_RECORDS_PER_BATCH)


class RecordOutcome(ResponseModel):
    id: uuid.UUID
    status: Literal["stored", "duplicate", "conflict"] = Field(
        description="stored; duplicate (same id, same content: nothing written); conflict "
        "(same id, other content: nothing written)."
    )


class AuditBatchResult(ResponseModel):
    records: list[RecordOutcome]


class InclusionProof(ResponseModel):
    index: int
    size: int
    hashes: list[str] = Field(description="RFC 9162 inclusion path, standard base64.")


class ConsistencyProof(ResponseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: int = Field(alias="from", serialization_alias="from")
    to: int
    hashes: list[str] = Field(description="RFC 9162 consistency proof, standard base64.")


class RecordProof(ResponseModel):
    size: int
    hashes: list[str]
    checkpoint: str = Field(description="The signed note of the checkpoint the proof is against.")


class LogPosition(ResponseModel):
    domain: str
    index: int | None = Field(description="The leaf index; null until sequenced.")
    leaf_hash: str | None
    canonical: str | None = Field(description="The exact bytes hashed (base64).")


class AuditRecordPublic(ResponseModel):
    record: dict[str, Any]
    log: LogPosition
    proof: RecordProof | None = None


class AuditRecordSummary(ResponseModel):
    id: uuid.UUID
    domain: str
    agent_id: uuid.UUID
    kind: str
    action: str
    status: str
    decision_id: uuid.UUID | None
    trace_id: str | None
    timestamp: datetime
    created_at: datetime
    record: dict[str, Any]


class CheckpointPublic(ResponseModel):
    id: uuid.UUID
    domain: str
    size: int
    root_hash: str
    note: str
    created_at: datetime


class VerifierKeyPublic(ResponseModel):
    name: str = Field(description="The key name: the log's origin, <issuer host>/audit/<domain>.")
    verifier_key: str = Field(description="Note verifier key <name>+<hash>+<base64 key>.")
    created_at: datetime


class VerifierKeys(ResponseModel):
    keys: list[VerifierKeyPublic]


class LogVerification(ResponseModel):
    domain: str
    size: int = Field(description="Leaves checked.")
    checkpoint_size: int | None = None
    first_bad_index: int | None = None
    reason: str | None = None


class VerifyResult(ResponseModel):
    ok: bool
    logs: list[LogVerification]


class RedactionList(RequestModel):
    fields: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] = Field(
        max_length=200,
        description="Dotted field patterns (`*` one segment, `**` any depth), rooted at the "
        "record: resource.card_number, inputs.**.ssn.",
    )


class RedactionListPublic(ResponseModel):
    domain: str
    fields: list[str]

"""What every audit writer shares: the process context (redaction key, log names), the 503
raised when a record cannot be written, and the steps that turn a record into stored bytes
(redaction through ``kit.redaction``, RFC 8785 through ``log.canonical``, the size limit).

Writers: ``ingest`` (agents' records), ``service.record_decision`` (decisions), ``governance``
(approvals, budgets, kill switch).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import rfc8785
import structlog

from control_plane.audit import jcs
from control_plane.audit.log import MAX_RECORD_BYTES, canonical, ijson_problem
from control_plane.kit.errors import FieldError, ServiceUnavailable, ValidationFailed
from control_plane.kit.redaction import InvalidPatternError, RedactionPattern, redact
from control_plane.oauth2.agent_auth import AgentPrincipal

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AuditContext:
    """What the audit domain needs from the process: the redaction HMAC key (derived from the
    KEK) and the issuer host that names the logs."""

    redaction_key: bytes
    host: str
    #: Each log's origin once it has a checkpoint (``keys.log_origin``): fixed for good then.
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_issuer(cls, redaction_key: bytes, issuer_url: str) -> AuditContext:
        parts = urlsplit(issuer_url)
        host = (parts.netloc + parts.path).rstrip("/") or "localhost"
        return cls(redaction_key=redaction_key, host=host)

    def origin(self, domain: str) -> str:
        """The origin this process gives a new log: ``<issuer host>/audit/<domain>``. A log
        that has a checkpoint keeps the origin it was first signed for (``keys.log_origin``)."""
        return f"{self.host}/audit/{domain}"


class AuditUnavailable(ServiceUnavailable):
    title = "Audit log unavailable"


class RecordExists(AuditUnavailable):
    """The record's id is taken: a concurrent transaction stored a record with it first (an edge
    decision log uploaded twice at once). Answered as ``AuditUnavailable`` (503) unless the
    caller, which can tell a duplicate, handles it."""


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_patterns(texts: Iterable[str]) -> list[RedactionPattern]:
    out = []
    for text in texts:
        try:
            out.append(RedactionPattern.parse(text))
        except InvalidPatternError:
            # A policy obligation naming an impossible path; nothing it could match.
            log.warning("audit_redaction_pattern_invalid")
    return out


def agent_document(principal: AgentPrincipal, version: Any) -> dict[str, Any]:
    agent = principal.agent
    return {
        "id": str(agent.id),
        "name": agent.name,
        "version": version.version if version is not None else None,
        "model_name": getattr(version, "model_name", None),
        "model_version": getattr(version, "model_version", None),
    }


def redacted(fields: dict[str, Any], patterns: Sequence[RedactionPattern], key: bytes) -> Any:
    copy, _ = redact(fields, patterns, key)
    return copy


def encode(stored: dict[str, Any], pointer: str, *, plain: bool = False) -> bytes:
    """RFC 8785 bytes of a record, or 422 naming the field that cannot be canonicalised.
    ``plain``: the caller has checked that the record holds no float, no integer beyond
    +-(2^53 - 1) and no object key beyond U+FFFF (``jcs.dumps_plain``)."""
    try:
        data = jcs.dumps_plain(stored) if plain else canonical(stored)
    except rfc8785.CanonicalizationError:
        where = ijson_problem(stored, pointer)
        raise ValidationFailed(
            "The record cannot be canonicalised (RFC 8785).",
            errors=[FieldError(pointer=where[0] if where else pointer, detail="not I-JSON")],
        ) from None
    if len(data) > MAX_RECORD_BYTES:
        raise ValidationFailed(
            f"The record is larger than {MAX_RECORD_BYTES} bytes once encoded.",
            errors=[FieldError(pointer=pointer, detail="too large")],
        )
    return data

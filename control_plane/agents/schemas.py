from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints

from control_plane.kit.schemas import Name, PatchModel, RequestModel, ResponseModel


class AgentStatus(StrEnum):
    active = "active"
    suspended = "suspended"
    retired = "retired"


class VersionState(StrEnum):
    registered = "registered"
    approved = "approved"
    active = "active"
    deprecated = "deprecated"


Owner = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(strict=True, max_length=2000)]
AutonomyLevel = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=3,
        description="0 observe, 1 assisted (approval above thresholds), 2 supervised, "
        "3 autonomous within its grants.",
    ),
]
LabelKey = Annotated[
    str, StringConstraints(strict=True, pattern=r"^[a-zA-Z0-9]([a-zA-Z0-9._/-]{0,61}[a-zA-Z0-9])?$")
]
LabelValue = Annotated[
    str, StringConstraints(strict=True, max_length=63, pattern=r"^[^\x00-\x1f\x7f]*$")
]
Labels = Annotated[
    dict[LabelKey, LabelValue],
    # Keys outside LabelKey's pattern are refused, so the document says so.
    Field(max_length=64, json_schema_extra={"additionalProperties": False}),
]
#: A label filter in a query: key=value.
LabelFilter = Annotated[str, StringConstraints(pattern=r"^[^=]+=[\s\S]*$")]

SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


class AgentCreate(RequestModel):
    name: Name
    domain: Name
    owner: Owner
    description: Description = ""
    autonomy_level: AutonomyLevel = 0
    labels: Labels = Field(default_factory=dict)


class AgentUpdate(PatchModel):
    """Partial update; name and domain cannot change (that would be a different agent)."""

    owner: Owner | None = None
    description: Description | None = None
    autonomy_level: AutonomyLevel | None = None
    labels: Labels | None = None


class AgentPublic(ResponseModel):
    id: uuid.UUID
    name: str
    domain: str
    owner: str
    description: str
    autonomy_level: int
    status: AgentStatus
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime


class VersionCreate(RequestModel):
    version: Annotated[
        str,
        StringConstraints(strict=True, max_length=100, pattern=SEMVER),
        Field(description="Semantic version, e.g. 1.4.0 or 2.0.0-rc.1.", examples=["1.0.0"]),
    ]
    model_name: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]
    model_version: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=100)]
    artifact_digest: Annotated[
        str,
        StringConstraints(strict=True, pattern=r"^sha256:[0-9a-f]{64}$"),
        Field(description="sha256 of the agent's code or image: sha256:<64 hex>."),
    ]
    signature: (
        Annotated[str, StringConstraints(strict=True, min_length=1, max_length=8192)] | None
    ) = None

    nullable_fields: ClassVar[frozenset[str]] = frozenset({"signature"})


class VersionPublic(ResponseModel):
    id: uuid.UUID
    agent_id: uuid.UUID
    version: str
    model_name: str
    model_version: str
    artifact_digest: str
    signature: str | None
    state: VersionState
    created_at: datetime
    updated_at: datetime
    registered_by: str | None = Field(
        default=None, description="Principal key of the operator that registered it."
    )
    approved_at: datetime | None
    approved_by: str | None
    activated_at: datetime | None

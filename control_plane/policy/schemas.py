from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from control_plane.kit.schemas import RequestModel, ResponseModel


class RevisionCreate(RequestModel):
    modules: Annotated[
        dict[str, str],
        Field(
            min_length=1,
            description='Rego v1 modules by path, e.g. {"agents/authz.rego": "package ..."}.',
        ),
    ]
    data: dict[str, Any] = Field(default_factory=dict, description="The bundle's data document.")


class RevisionSummary(ResponseModel):
    bundle: str
    revision: int
    digest: str
    active: bool = False
    modules: list[str] = Field(description="Module paths.")
    created_by: str
    created_at: datetime


class RevisionPublic(RevisionSummary):
    sources: dict[str, str] = Field(description="Module sources by path.")
    data: dict[str, Any]


class RevisionList(ResponseModel):
    data: list[RevisionSummary]
    has_more: bool
    next_after: int | None = Field(default=None, description="The after of the next page.")


class BundlePublic(ResponseModel):
    name: str
    active_revision: int | None
    created_at: datetime
    updated_at: datetime


class BundleList(ResponseModel):
    data: list[BundlePublic]
    has_more: bool
    next_after: str | None = None

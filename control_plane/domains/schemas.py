from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from control_plane.kit.schemas import Name, RequestModel, ResponseModel


class DomainCreate(RequestModel):
    name: Name
    description: Annotated[str, StringConstraints(strict=True, max_length=1000)] = ""


class DomainPublic(ResponseModel):
    name: str
    description: str
    created_at: datetime


class DomainList(ResponseModel):
    data: list[DomainPublic]
    has_more: bool
    next_after: str | None = Field(default=None, description="Cursor: the last domain's name.")

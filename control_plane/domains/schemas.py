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
    suspended_at: datetime | None = Field(
        default=None, description="Set while the kill switch is on: every agent is refused."
    )

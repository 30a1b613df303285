from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from control_plane.auth.principals import Role
from control_plane.kit.schemas import Name, RequestModel, ResponseModel


class OperatorCreate(RequestModel):
    name: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=100)]
    role: Role
    domains: Annotated[list[Name], Field(max_length=100)] = Field(
        default_factory=list,
        description="Domains a domain_admin manages, or an approver decides approvals and "
        "approves versions in (an approver without domains approves nothing); empty for the "
        "global roles.",
    )

    @model_validator(mode="after")
    def _scope_matches_role(self) -> OperatorCreate:
        if self.role is Role.domain_admin and not self.domains:
            raise ValueError("a domain_admin needs at least one domain")
        if self.role not in (Role.domain_admin, Role.approver) and self.domains:
            raise ValueError("only a domain_admin or an approver is scoped to domains")
        return self


class OperatorPublic(ResponseModel):
    id: uuid.UUID
    name: str
    role: Role
    domains: list[str]
    token_prefix: str = Field(description="First characters of the token, to recognise it.")
    created_at: datetime
    revoked_at: datetime | None


class OperatorCreated(OperatorPublic):
    token: str = Field(description="The bearer token. Shown once; store it now.")

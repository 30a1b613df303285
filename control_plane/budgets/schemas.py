from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from control_plane.kit.schemas import RequestModel, ResponseModel

# Strict: JSON true or "10" is not a limit (lax validation would read them as 1 and 10). Action
# counts are stored as 32-bit integers (PostgreSQL INTEGER), spend as 64-bit.
Limit = Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)]
Spend = Annotated[int, Field(strict=True, ge=0, le=2**53 - 1)]  # I-JSON: exact in a double


class BudgetUpdate(RequestModel):
    """The limits to set; a field left out or null has no limit."""

    actions_per_minute: Limit | None = Field(default=None, description="Allowed actions a minute.")
    actions_per_hour: Limit | None = Field(default=None, description="Allowed actions an hour.")
    spend_per_day: Spend | None = Field(
        default=None, description="Spend allowed a day (UTC), in minor units (cents)."
    )
    spend_field: Annotated[
        str,
        StringConstraints(strict=True, pattern=r"^(resource|context)(\.[A-Za-z0-9_-]{1,63}){1,4}$"),
    ] = Field(
        default="resource.amount",
        description="Where in the decision input the amount is (minor units), e.g. "
        "resource.amount.",
    )


class WindowUse(ResponseModel):
    limit: int
    used: int
    remaining: int
    resets_at: datetime


class BudgetPublic(ResponseModel):
    scope: str = Field(description="agent or domain")
    key: str = Field(description="The agent's id or the domain's name.")
    actions_per_minute: int | None
    actions_per_hour: int | None
    spend_per_day: int | None
    spend_field: str
    use: dict[str, WindowUse] = Field(
        description="Current use per limited window: actions_per_minute, actions_per_hour, "
        "spend_per_day."
    )
    updated_at: datetime | None

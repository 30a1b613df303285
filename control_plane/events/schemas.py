from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from control_plane.kit.schemas import ResponseModel


class CloudEvent(ResponseModel):
    """A CloudEvents 1.0 event in its JSON format, with the ``cursor`` extension attribute."""

    model_config = ConfigDict(extra="allow")

    specversion: str = Field(description="Always 1.0.")
    id: str = Field(description="Unique per event: de-duplicate on it.")
    source: str
    type: str = Field(description="One of the versioned types, e.g. approval.requested.v1.")
    subject: str | None = None
    time: datetime
    datacontenttype: str
    cursor: str = Field(description="Pass as after (or Last-Event-ID) to resume after it.")
    data: dict[str, Any]


class EventPage(ResponseModel):
    data: list[CloudEvent]
    has_more: bool = Field(description="More events are already available.")
    next_after: str | None = Field(
        description="The cursor to pass as after next time (the last event's; your after when "
        "the page is empty)."
    )

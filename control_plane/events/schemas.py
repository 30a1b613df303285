from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints

from control_plane.kit.schemas import Name, RequestModel, ResponseModel


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


class WebhookCreate(RequestModel):
    url: Annotated[str, StringConstraints(strict=True, min_length=8, max_length=2000)] = Field(
        description="https:// (or http://) URL; loopback, link-local and private addresses are "
        "refused unless the server allows them (AGENTCTL_WEBHOOK_ALLOW_PRIVATE)."
    )
    types: Annotated[list[str], Field(max_length=50)] = Field(
        default_factory=list, description="Event types to send; empty: all."
    )
    domain: Name | None = Field(default=None, description="Only this domain's events; null: all.")


class WebhookPublic(ResponseModel):
    id: uuid.UUID
    url: str
    types: list[str]
    domain: str | None
    created_by: str
    created_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(
        description="The signing secret (whsec_..., Standard Webhooks). Shown once; store it now."
    )


class DeliveryPublic(ResponseModel):
    id: uuid.UUID
    webhook_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    state: str = Field(description="pending, delivered or dead")
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime

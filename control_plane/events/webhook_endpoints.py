"""HTTP for webhooks: register, list, read, delete; deliveries and redelivery."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import Response

from control_plane.auth.dependencies import CurrentOperator, OperatorIdempotent
from control_plane.events import webhooks
from control_plane.events.schemas import (
    DeliveryPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
)
from control_plane.kit.errors import error_responses
from control_plane.kit.pagination import Page, Pagination
from control_plane.kit.router import Router
from control_plane.kit.routing import Session
from control_plane.state import State

router = Router(tag="webhooks", prefix="/v1/webhooks", errors=(401, 403, 422))


@router.post("", status_code=201, dependencies=[OperatorIdempotent])
async def create_webhook(
    body: WebhookCreate, who: CurrentOperator, session: Session, state: State, response: Response
) -> WebhookCreated:
    """Subscribe a URL to events; the answer holds the signing secret, shown once."""
    webhook, secret = await webhooks.create(
        session, who, body, state.settings, state.kek, state.webhook_dispatcher.resolver
    )
    response.headers["Location"] = f"/v1/webhooks/{webhook.id}"
    response.headers["Cache-Control"] = "no-store"
    return WebhookCreated.model_validate(
        {**WebhookPublic.model_validate(webhook).model_dump(), "secret": secret}
    )


@router.get("")
async def list_webhooks(
    who: CurrentOperator, session: Session, page: Pagination
) -> Page[WebhookPublic]:
    """List the webhooks the caller manages."""
    rows = await webhooks.list_webhooks(session, who, after=page.after, limit=page.limit)
    return Page[WebhookPublic].of(rows, page.limit)


@router.get("/{webhook_id}", responses=error_responses(404))
async def get_webhook(
    webhook_id: uuid.UUID, who: CurrentOperator, session: Session
) -> WebhookPublic:
    """Get one webhook."""
    return WebhookPublic.model_validate(await webhooks.get(session, who, webhook_id))


@router.delete("/{webhook_id}", status_code=204, responses=error_responses(404))
async def delete_webhook(webhook_id: uuid.UUID, who: CurrentOperator, session: Session) -> Response:
    """Unsubscribe: nothing more is queued; pending deliveries are dead-lettered."""
    await webhooks.delete(session, who, webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", responses=error_responses(404))
async def list_deliveries(
    webhook_id: uuid.UUID,
    who: CurrentOperator,
    session: Session,
    page: Pagination,
    state: Literal["pending", "delivered", "dead"] | None = None,
) -> Page[DeliveryPublic]:
    """List a webhook's deliveries, oldest first (state: pending, delivered, dead)."""
    rows = await webhooks.list_deliveries(
        session, who, webhook_id, state=state, after=page.after, limit=page.limit
    )
    return Page[DeliveryPublic].of(rows, page.limit)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    dependencies=[OperatorIdempotent],
    responses=error_responses(404),
)
async def redeliver_webhook(
    webhook_id: uuid.UUID, delivery_id: uuid.UUID, who: CurrentOperator, session: Session
) -> DeliveryPublic:
    """Send a delivery again (e.g. a dead-lettered one): pending, due now, attempts reset."""
    delivery = await webhooks.redeliver(session, who, webhook_id, delivery_id)
    return DeliveryPublic.model_validate(delivery)

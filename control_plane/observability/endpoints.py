from __future__ import annotations

from fastapi import Response

from control_plane.auth.dependencies import CurrentOperator
from control_plane.kit.router import Router
from control_plane.kit.routing import Session
from control_plane.observability import metrics, service

router = Router(tag="metrics", errors=(401, 403))


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format 0.0.4.",
            "content": {metrics.CONTENT_TYPE: {"schema": {"type": "string"}}},
        }
    },
)
async def get_metrics(who: CurrentOperator, session: Session) -> Response:
    """Prometheus metrics of every worker of this replica (operator token, metrics:read)."""
    body = await service.render(session, who)
    return Response(body, media_type=metrics.CONTENT_TYPE)

"""Every router of the service, included in one stated order.

Order matters where paths overlap: ``/v1/agents/me`` (the agent's own record, in ``credentials``)
is matched before the registry's ``/v1/agents/{agent_id}``. Otherwise routers follow the
domain order of the OpenAPI document: health, domains, agents, credentials, operators, policies,
decisions, approvals, budgets, audit, events, federation, OAuth2, metrics; last the web console
(``/console``, not in the document). A new domain adds its
router here.
"""

from __future__ import annotations

from functools import cache

from fastapi import APIRouter

from control_plane.agents.endpoints import router as agents
from control_plane.approvals.endpoints import router as approvals
from control_plane.audit.endpoints import router as audit
from control_plane.budgets.endpoints import router as budgets
from control_plane.console.endpoints import router as console
from control_plane.credentials.endpoints import router as credentials
from control_plane.credentials.endpoints import self_router as agent_self
from control_plane.decisions.endpoints import router as decisions
from control_plane.domains.endpoints import router as domains
from control_plane.events.endpoints import router as events
from control_plane.events.webhook_endpoints import router as webhooks
from control_plane.federation.endpoints import bundle_router as federation_bundles
from control_plane.federation.endpoints import router as federation
from control_plane.health.endpoints import router as health
from control_plane.impact.endpoints import router as impact
from control_plane.killswitch.endpoints import router as killswitch
from control_plane.oauth2.endpoints import router as oauth2
from control_plane.observability.endpoints import router as metrics
from control_plane.operators.endpoints import router as operators
from control_plane.policy.endpoints import router as policies
from control_plane.policy.rollout_endpoints import router as policy_rollout

ROUTERS: tuple[APIRouter, ...] = (
    health,
    domains,
    killswitch,
    agent_self,  # before agents: /v1/agents/me is not an agent id
    agents,
    credentials,
    operators,
    policies,
    impact,
    policy_rollout,
    decisions,
    approvals,
    budgets,
    audit,
    federation,
    federation_bundles,
    events,
    webhooks,
    oauth2,
    metrics,
    console,  # HTML pages under /console, outside the OpenAPI document
)


@cache
def build_api() -> APIRouter:
    """The service's router, built once per process and shared by every app the process builds
    (``--workers`` builds one per worker process; the test suite hundreds in one process).
    Routes are a function of the code alone. FastAPI prepares a router's routes (dependency
    graphs, a pydantic adapter per parameter) once per router object it includes: about half a
    second here, paid by each app when each built its own router. An app adds its own routes
    to itself, never to this router."""
    api = APIRouter()
    for router in ROUTERS:
        api.include_router(router)
    return api

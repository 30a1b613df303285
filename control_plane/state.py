"""The typed application state: everything the lifespan builds, in one object.

``create_app``'s lifespan builds an ``AppState`` and stores it on ``app.state.context``;
endpoints take it through the ``State`` dependency (or ``app_state(app)`` outside a request)
instead of reading untyped ``app.state`` attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, cast

from fastapi import Depends, Request
from starlette.applications import Starlette

from control_plane.config import Settings
from control_plane.kit.database import Database

if TYPE_CHECKING:  # built in the lifespan; importing them here would be an import cycle
    from control_plane.audit.service import AuditContext
    from control_plane.audit.trees import LogTrees
    from control_plane.audit.worker import AuditWorker
    from control_plane.crypto.keystore import KeyStore
    from control_plane.events.webhooks import WebhookDispatcher
    from control_plane.federation.service import BundleCache
    from control_plane.impact.jobs import ImpactJobs
    from control_plane.oauth2.agent_auth import AgentAuthenticator
    from control_plane.oauth2.pruning import Pruner
    from control_plane.policy.engines import InputLimits
    from control_plane.policy.runtime import PolicyRuntime
    from control_plane.policy.shadow import ShadowEvaluator


@dataclass
class AppState:
    settings: Settings
    database: Database
    migration_head: str | None
    keystore: KeyStore
    agent_authenticator: AgentAuthenticator
    input_limits: InputLimits
    policy_runtime: PolicyRuntime
    pruner: Pruner
    #: The key-encryption key (``crypto.resolve_kek``) and the redaction key derived from it.
    kek: str
    redaction_key: bytes
    audit_context: AuditContext
    audit_trees: LogTrees
    audit_worker: AuditWorker
    #: Federation: each domain's last built bundle, the bundle signing key, points' contacts.
    bundle_cache: BundleCache
    webhook_dispatcher: WebhookDispatcher
    #: Background impact analyses of this replica (in memory; see impact/jobs.py).
    impact_jobs: ImpactJobs
    #: Shadow evaluation of decisions (policy.shadow): a bounded queue and its worker.
    shadow_evaluator: ShadowEvaluator


def app_state(app: Starlette) -> AppState:
    """The state of a started app (its lifespan has run)."""
    return cast(AppState, app.state.context)


async def get_state(request: Request) -> AppState:
    return app_state(request.app)


State = Annotated[AppState, Depends(get_state)]

"""All table models, imported here so ``SQLModel.metadata`` is complete for Alembic and tests."""

from control_plane.models.audit import (
    AuditCheckpoint,
    AuditKey,
    AuditLeaf,
    AuditPending,
    AuditRecordRow,
    AuditRedactionList,
)
from control_plane.models.console import ConsoleSession
from control_plane.models.credentials import Credential, RevokedToken, SigningKeyRow, UsedAssertion
from control_plane.models.federation import BundleSigningKey, EnforcementPoint
from control_plane.models.governance import (
    Approval,
    Budget,
    BudgetCounter,
    EventRow,
    Webhook,
    WebhookDelivery,
)
from control_plane.models.idempotency import IdempotencyRecord
from control_plane.models.operator import Operator
from control_plane.models.policy import Decision, PolicyBundle, PolicyRevision, ShadowDiff
from control_plane.models.ratelimit import AuthFailureCount
from control_plane.models.registry import Agent, AgentVersion, Domain
from control_plane.models.replay import DecisionReplay

__all__ = [
    "Agent",
    "AgentVersion",
    "Approval",
    "AuditCheckpoint",
    "AuditKey",
    "AuditLeaf",
    "AuditPending",
    "AuditRecordRow",
    "AuditRedactionList",
    "AuthFailureCount",
    "Budget",
    "BudgetCounter",
    "BundleSigningKey",
    "ConsoleSession",
    "Credential",
    "Decision",
    "DecisionReplay",
    "Domain",
    "EnforcementPoint",
    "EventRow",
    "IdempotencyRecord",
    "Operator",
    "PolicyBundle",
    "PolicyRevision",
    "RevokedToken",
    "ShadowDiff",
    "SigningKeyRow",
    "UsedAssertion",
    "Webhook",
    "WebhookDelivery",
]

"""Operator roles and the authorisation rules every registry route applies.

Two checks, in this order:

1. Role: does the role grant the capability at all (read or write the registry)? If not, 403.
2. Scope: a domain-scoped role sees only its domains. A resource outside them answers 404, so a
   caller cannot learn that an agent of another domain exists.
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from control_plane.auth.roles import Role as Role  # re-exported: the roles' home is roles
from control_plane.kit.errors import Forbidden, NotFound

OPERATOR_TOKEN_PREFIX = "acp_op_"  # noqa: S105 - a public prefix, not a secret

T = TypeVar("T")


def _domain_of(found: Any) -> str:
    domain: str = found.domain
    return domain


class Capability(StrEnum):
    registry_read = "registry:read"
    registry_write = "registry:write"
    operators_manage = "operators:manage"
    policy_read = "policy:read"
    policy_write = "policy:write"
    decisions_read = "decisions:read"
    audit_read = "audit:read"
    audit_manage = "audit:manage"
    metrics_read = "metrics:read"
    approvals_read = "approvals:read"
    approvals_decide = "approvals:decide"
    budgets_write = "budgets:write"
    events_read = "events:read"
    events_manage = "events:manage"
    versions_approve = "versions:approve"


_ROLE_CAPABILITIES: dict[Role, frozenset[Capability]] = {
    Role.platform_admin: frozenset(Capability),
    Role.domain_admin: frozenset(
        {
            Capability.registry_read,
            Capability.registry_write,
            Capability.decisions_read,
            Capability.audit_read,
            Capability.audit_manage,
            Capability.approvals_read,
            Capability.budgets_write,
            Capability.events_read,
            Capability.events_manage,
            Capability.versions_approve,
        }
    ),
    Role.auditor: frozenset(
        {
            Capability.registry_read,
            Capability.policy_read,
            Capability.decisions_read,
            Capability.audit_read,
            Capability.metrics_read,
            Capability.approvals_read,
            Capability.events_read,
        }
    ),
    # Approvers, in their domains: decide approvals, approve agent versions (and read what they
    # approve); least privilege elsewhere.
    Role.approver: frozenset(
        {Capability.versions_approve, Capability.approvals_read, Capability.approvals_decide}
    ),
}

_GLOBAL_ROLES = frozenset({Role.platform_admin, Role.auditor})


def _person(name: str) -> str:
    return unicodedata.normalize("NFKC", name).strip().casefold()


@dataclass(frozen=True)
class OperatorPrincipal:
    id: uuid.UUID
    name: str
    role: Role
    domains: frozenset[str]

    @property
    def key(self) -> str:
        """Stable identity used to namespace idempotency keys."""
        return f"operator:{self.id}"

    @property
    def is_global(self) -> bool:
        return self.role in _GLOBAL_ROLES

    def can(self, capability: Capability) -> bool:
        return capability in _ROLE_CAPABILITIES[self.role]

    def require(self, capability: Capability, *alternatives: Capability) -> None:
        """``Forbidden`` unless the role grants ``capability`` or one of ``alternatives``."""
        if not any(self.can(c) for c in (capability, *alternatives)):
            raise Forbidden(f"The role {self.role} does not allow {capability}.")

    def is_named(self, name: str | None) -> bool:
        """Whether ``name`` (an agent's ``owner``, say) names this operator: compared as people
        read names, so ``Payments-Team@Example.com`` is ``payments-team@example.com`` (Unicode
        NFKC, case folded, surrounding white space ignored). Separation-of-duties checks use it:
        a name that differs only in case must not make its owner a second person."""
        return name is not None and _person(name) == _person(self.name)

    def sees_domain(self, domain: str) -> bool:
        return self.is_global or domain in self.domains

    def visible(
        self, found: T | None, *, what: str, domain_of: Callable[[T], str] = _domain_of
    ) -> T:
        """``found`` when it exists and lies in one of the caller's domains, else ``NotFound``
        ("{what} not found."): outside your domains the answer is the same 404 as for nothing,
        so existence is not disclosed. Every domain uses this one helper for that rule."""
        if found is None or not self.sees_domain(domain_of(found)):
            raise NotFound(f"{what} not found.")
        return found

    def visible_domains(self) -> frozenset[str] | None:
        """None means every domain."""
        return None if self.is_global else self.domains


def new_operator_token() -> str:
    return OPERATOR_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a plain SHA-256 is preimage-safe and lets the lookup be an
    # indexed equality match (no per-row slow KDF, no timing side channel on the comparison).
    return hashlib.sha256(token.encode()).hexdigest()

"""Operator roles: what an operator holds and ``agentctl operators create --role`` offers.

A module of its own, importing nothing: the CLI offers the roles without importing the web
framework (``principals`` maps each role to its capabilities).
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    platform_admin = "platform_admin"
    domain_admin = "domain_admin"
    auditor = "auditor"
    approver = "approver"

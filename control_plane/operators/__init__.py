"""Operators: tokens for people and automation, each with a role and, for domain_admin, domains."""

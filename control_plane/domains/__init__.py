"""Domains: a team's area of ownership (payments, claims, ...). Operators are scoped to them."""

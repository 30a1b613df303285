"""Who is calling, and what they may do: operator principals, roles and domain scope."""

"""Federation: enforcement points (OPA sidecars, SDKs in local mode) of each domain, the signed
OPA bundle each pulls, and the decision-log and status sinks they report to.

The contract is docs/federation.md. ``service`` registers points and serves bundles, ``sinks``
takes decision logs and status reports, ``bundle`` builds a bundle (pure), ``signing`` holds the
bundle signing key and signs, ``auth`` authenticates enforcement points, ``tokens`` issues their
access tokens, ``opa_config`` writes an OPA configuration for one point.
"""

"""Policy: Rego bundles, the engines that evaluate them, and their validation.

`engine` holds the `PolicyEngine` protocol, the fail-closed evaluation layer shared by every
engine and the `build_engine` factory; `engines/` holds the embedded (regopy) and remote (OPA)
implementations; `validation` checks modules before a revision is stored and runs Rego tests;
`source` reads a policy directory the way OPA's loader does.
"""

"""Policy: Rego bundles, the engines that evaluate them, and their validation by OPA.

`engines/` holds the `PolicyEngine` protocol and fail-closed guard (`base`), the in-process (wasm)
and remote (OPA) implementations and the factory; `validation/` runs the pinned OPA binary (`opa
check` with the shared capabilities file, `opa eval`, `opa test`) before a revision is stored;
`bundles` reads and writes bundle directories and archives; `service` and `repository` store
revisions; `runtime` keeps the engine on the active revision.
"""

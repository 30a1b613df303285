"""The audit transparency log (issue 9): records ingested per domain, sequenced into RFC 9162
Merkle trees, signed C2SP checkpoints, inclusion and consistency proofs, offline verification and
export. Decisions write their records through ``service``."""

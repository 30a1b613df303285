"""Per-agent credentials: signing keys, access tokens and client authentication (issue 3).

`keys` holds the control plane's signing keys (generation, encryption at rest, the in-memory key
ring and its public JWKS) and the validation of public keys that agents register for
`private_key_jwt`. `tokens` issues and verifies RFC 9068 access tokens, verifies RFC 7523 client
assertions, hashes client secrets and caches verified tokens. Both modules are pure: no database, no
settings object, no clock of their own; the service layer loads rows, passes secrets and `now`, and
records one-time `jti` values and revocations.
"""

"""The OAuth2 authorisation server of agents (issue 3).

``endpoints`` serves /oauth/token (client_credentials with client_secret_basic or private_key_jwt,
RFC 6749 4.4 and RFC 7523), /oauth/introspect (RFC 7662), /oauth/revoke (RFC 7009), the server
metadata (RFC 8414) and the JWKS; ``service`` holds their rules. ``tokens`` mints and verifies RFC
9068 access tokens, ``assertions`` verifies client assertions, ``cache`` caches verified tokens,
``agent_auth`` authenticates agents on protected routes, and ``pruning`` deletes expired one-time
assertion and revocation rows in the background. ``tokens``, ``assertions`` and ``cache`` are pure:
no database, no settings, no clock of their own.
"""

"""Credentials: the OAuth2 clients of agents (create, list, revoke). The OAuth2 server that
authenticates them is ``control_plane.oauth2``; key material is ``control_plane.crypto``."""

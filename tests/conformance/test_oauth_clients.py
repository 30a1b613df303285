"""Real OAuth 2.0 clients against a live server: Authlib's OAuth2Client (client_secret_basic, and
private_key_jwt with Authlib's default assertion settings, EdDSA and ES256), Authlib's RFC 8414
metadata validator, and every listed method and algorithm working while unlisted ones are
refused."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from authlib.oauth2.rfc7523 import ClientSecretJWT, PrivateKeyJWT
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from tests.conformance.conftest import Live
from tests.conformance.support import decide, new_agent, new_credential

CURVES = {"EdDSA": ("OKP", "Ed25519"), "ES256": ("EC", "P-256")}


def _metadata(live: Live) -> dict[str, Any]:
    r = httpx.get(f"{live.url}/.well-known/oauth-authorization-server")
    assert r.status_code == 200
    data: dict[str, Any] = r.json()
    return data


def _key(alg: str) -> OKPKey | ECKey:
    if alg == "EdDSA":
        return OKPKey.generate_key("Ed25519")
    return ECKey.generate_key("P-256")


def _jwt_client(live: Live, alg: str) -> tuple[str, OKPKey | ECKey]:
    agent = new_agent(live.url, live.admin)
    key = _key(alg)
    public = {**key.as_dict(private=False), "alg": alg, "use": "sig"}
    cred = new_credential(live.url, live.admin, agent["id"], public_jwk=public)
    return cred["client_id"], key


def test_metadata_passes_authlib_validator(live: Live) -> None:
    metadata = AuthorizationServerMetadata(_metadata(live))
    metadata.validate()
    assert metadata["issuer"] == live.url


def test_client_secret_basic(live: Live) -> None:
    meta = _metadata(live)
    assert "client_secret_basic" in meta["token_endpoint_auth_methods_supported"]
    agent = new_agent(live.url, live.admin)
    cred = new_credential(live.url, live.admin, agent["id"])
    with OAuth2Client(
        cred["client_id"],
        cred["client_secret"],
        token_endpoint_auth_method="client_secret_basic",
        revocation_endpoint_auth_method="client_secret_basic",
    ) as oauth:
        token = oauth.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        assert token["token_type"] == "Bearer"
        me = oauth.get(f"{live.url}/v1/agents/me")
        assert me.status_code == 200, me.text
        assert me.json()["id"] == agent["id"]
        revoked = oauth.revoke_token(meta["revocation_endpoint"], token["access_token"])
        assert revoked.status_code == 200, revoked.text
        assert oauth.get(f"{live.url}/v1/agents/me").status_code == 401


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_private_key_jwt_with_authlib_defaults(live: Live, alg: str) -> None:
    """Authlib's PrivateKeyJWT as documented: only the algorithm is chosen. Its defaults sign
    assertions valid for 3600 s with ``aud`` = the URL called (token or revocation endpoint)."""
    meta = _metadata(live)
    assert alg in meta["token_endpoint_auth_signing_alg_values_supported"]
    assert alg in meta["revocation_endpoint_auth_signing_alg_values_supported"]
    client_id, key = _jwt_client(live, alg)
    with OAuth2Client(
        client_id,
        key,
        token_endpoint_auth_method=PrivateKeyJWT(alg=alg),
        revocation_endpoint_auth_method=PrivateKeyJWT(alg=alg),
    ) as oauth:
        token = oauth.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        me = oauth.get(f"{live.url}/v1/agents/me")
        assert me.status_code == 200, me.text
        revoked = oauth.revoke_token(meta["revocation_endpoint"], token["access_token"])
        assert revoked.status_code == 200, revoked.text
        assert oauth.get(f"{live.url}/v1/agents/me").status_code == 401


def test_unlisted_methods_and_algorithms_are_refused(live: Live) -> None:
    meta = _metadata(live)
    token_url = meta["token_endpoint"]
    agent = new_agent(live.url, live.admin)
    cred = new_credential(live.url, live.admin, agent["id"])
    for method in ("client_secret_post", ClientSecretJWT()):
        name = method if isinstance(method, str) else method.name
        assert name not in meta["token_endpoint_auth_methods_supported"]
        with (
            OAuth2Client(
                cred["client_id"], cred["client_secret"], token_endpoint_auth_method=method
            ) as oauth,
            pytest.raises(OAuthError) as refused,
        ):
            oauth.fetch_token(token_url, grant_type="client_credentials")
        assert refused.value.error == "invalid_client"
    # A private_key_jwt assertion with an algorithm the metadata does not list.
    for alg, key in (("RS256", RSAKey.generate_key(2048)), ("ES384", ECKey.generate_key("P-384"))):
        assert alg not in meta["token_endpoint_auth_signing_alg_values_supported"]
        now = int(time.time())
        claims = {
            "iss": cred["client_id"],
            "sub": cred["client_id"],
            "aud": token_url,
            "iat": now,
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        }
        assertion = jwt.encode({"alg": alg}, claims, key, algorithms=[alg])
        r = httpx.post(
            token_url,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
        )
        assert r.status_code == 401, r.text


def test_go_x_oauth2_clientcredentials(live: Live, go_client: str) -> None:
    import subprocess

    agent = new_agent(live.url, live.admin)
    cred = new_credential(live.url, live.admin, agent["id"])
    done = subprocess.run(
        [go_client],
        env={
            **os.environ,
            "TOKEN_URL": f"{live.url}/oauth/token",
            "CLIENT_ID": cred["client_id"],
            "CLIENT_SECRET": cred["client_secret"],
            "ME_URL": f"{live.url}/v1/agents/me",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert agent["id"] in done.stdout
    access_token = done.stdout.strip().splitlines()[0]
    assert decide(live.url, access_token)["effect"] in {"allow", "deny", "require_approval"}

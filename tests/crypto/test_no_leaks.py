"""No secret, token or private key appears in logs, list responses or error bodies.

A real server runs at DEBUG level; the test drives the whole credential flow, including failures
that carry secrets in the request, then scans the server log and every response except the one
creation response allowed to show each secret.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import httpx
from sqlmodel import select

from control_plane.crypto.encryption import decrypt_private_key
from control_plane.crypto.signing import generate_signing_key
from control_plane.kit.db import create_engine, create_sessionmaker
from control_plane.models import SigningKeyRow
from tests.fixtures.oauth2 import assertion
from tests.fixtures.servers import server_env, serving

ADMIN = "acp_op_leak-test-admin-token-0123456789abcdef"
KEK = "leak-test-key-encryption-key-0123456789abcdefgh"


def _server_private_keys(db_url: str) -> list[str]:
    async def load() -> list[str]:
        engine = create_engine(db_url)
        try:
            async with create_sessionmaker(engine)() as session:
                rows = (await session.exec(select(SigningKeyRow))).all()
                out = []
                for row in rows:
                    key = decrypt_private_key(
                        row.private_key_encrypted, kid=row.kid, alg=row.alg, kek=KEK
                    )
                    out.append(key.jose_key.as_dict(private=True)["d"])
                return out
        finally:
            await engine.dispose()

    return asyncio.run(load())


def test_secrets_never_leak(db_url: str, tmp_path: Path) -> None:
    env = server_env(
        db_url,
        tmp_path,
        AGENTCTL_ADMIN_TOKEN=ADMIN,
        AGENTCTL_KEY_ENCRYPTION_KEY=KEK,
        AGENTCTL_LOG_LEVEL="DEBUG",
        AGENTCTL_ISSUER="http://control-plane.test",
    )
    admin = {"Authorization": f"Bearer {ADMIN}"}
    scanned: list[str] = []  # every response body and header that must not carry a secret
    secrets: list[str] = [ADMIN, KEK]
    client_key = generate_signing_key("EdDSA")
    secrets.append(client_key.jose_key.as_dict(private=True)["d"])

    def call(method: str, url: str, *, allow_secret: bool = False, **kw: object) -> httpx.Response:
        r = httpx.request(method, url, timeout=10, **kw)  # type: ignore[arg-type]
        if not allow_secret:
            scanned.append(r.text + str(dict(r.headers)))
        assert r.status_code < 500, r.text
        return r

    log = tmp_path / "server.log"
    with serving(env, log) as url:
        call("POST", f"{url}/v1/domains", json={"name": "payments"}, headers=admin)
        agent = call(
            "POST",
            f"{url}/v1/agents",
            json={"name": "bot", "domain": "payments", "owner": "o"},
            headers=admin,
        ).json()
        op = call(
            "POST",
            f"{url}/v1/operators",
            json={"name": "aud", "role": "auditor"},
            headers=admin,
            allow_secret=True,
        ).json()
        secrets.append(op["token"])
        cred = call(
            "POST",
            f"{url}/v1/agents/{agent['id']}/credentials",
            json={"scopes": ["decisions:create"]},
            headers=admin,
            allow_secret=True,
        ).json()
        secrets.append(cred["client_secret"])
        jwt_cred = call(
            "POST",
            f"{url}/v1/agents/{agent['id']}/credentials",
            json={"scopes": ["decisions:create"], "public_jwk": client_key.public_jwk()},
            headers=admin,
        ).json()
        basic = base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}".encode()).decode()
        issued = call(
            "POST",
            f"{url}/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
            allow_secret=True,
        ).json()
        access = issued["access_token"]
        secrets.append(access)
        signed = assertion(client_key, jwt_cred["client_id"]).replace("testserver", "x")
        call(
            "POST",
            f"{url}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": signed,
            },
        )
        secrets.append(signed)

        bearer = {"Authorization": f"Bearer {access}"}
        call("GET", f"{url}/v1/agents/me", headers=bearer)
        call("GET", f"{url}/v1/agents/{agent['id']}/credentials", headers=admin)
        call("GET", f"{url}/v1/operators", headers=admin)
        call("POST", f"{url}/oauth/introspect", data={"token": access}, headers=admin)
        # Failures that carry secrets in the request.
        wrong = base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}x".encode())
        call(
            "POST",
            f"{url}/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {wrong.decode()}"},
        )
        call(
            "POST",
            f"{url}/oauth/token",
            data={"grant_type": "client_credentials", "client_secret": cred["client_secret"]},
        )
        # Secrets where they do not belong, in the query string: refused, and not logged by
        # uvicorn's access line either.
        call(
            "POST",
            f"{url}/oauth/token?grant_type=client_credentials&client_id={cred['client_id']}"
            f"&client_secret={cred['client_secret']}",
        )
        call("GET", f"{url}/v1/agents/me?access_token={access}")
        call("GET", f"{url}/v1/agents", headers=bearer)
        call("GET", f"{url}/v1/agents/me", headers={"Authorization": f"Bearer {access}x"})
        call("GET", f"{url}/v1/agents", headers={"Authorization": f"Bearer {op['token']}x"})
        call(
            "POST",
            f"{url}/v1/agents/{agent['id']}/credentials",
            json={
                "scopes": ["decisions:create"],
                "public_jwk": client_key.jose_key.as_dict(private=True),
            },
            headers=admin,
        )
        call(
            "POST",
            f"{url}/oauth/revoke",
            data={"token": access},
            headers={"Authorization": f"Basic {basic}"},
        )
        call("POST", f"{url}/oauth/introspect", data={"token": access}, headers=admin)

    secrets += _server_private_keys(db_url)
    log_text = log.read_text()
    # The log really captured the traffic (so scanning it means something).
    assert '"POST /oauth/token HTTP/1.1" 401' in log_text
    assert '"GET /v1/agents/me HTTP/1.1" 200' in log_text
    for secret in secrets:
        assert secret not in log_text, "a secret appeared in the server log"
        for text in scanned:
            assert secret not in text, "a secret appeared in a response"
        # Not even half of one (e.g. a truncated token in an error message).
        assert secret[: len(secret) // 2] not in log_text

"""A real ``agentctl serve`` (uvicorn, SQLite and PostgreSQL) for the SDK tests, agents with
credentials made over its API, and the ``sdk`` fixture that runs one behavioural suite over the
sync and the async client."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from agent_sdk import AsyncClient, Client
from tests.fixtures import databases
from tests.fixtures.servers import free_port, server_env, serving

database = databases.database  # the fixture, shared with the other module suites

ADMIN_TOKEN = "acp_op_sdk-tests-admin-token-0123456789abcdef"
KEK = "sdk-tests-key-encryption-key-0123456789abcdefghij"
_seq = itertools.count(1)


@dataclass
class Server:
    url: str
    db_url: str
    env: dict[str, str]
    log: Path
    port: int

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def make_server_env(db_url: str, data_dir: Path) -> dict[str, str]:
    return server_env(
        db_url,
        data_dir,
        AGENTCTL_ADMIN_TOKEN=ADMIN_TOKEN,
        AGENTCTL_KEY_ENCRYPTION_KEY=KEK,
        AGENTCTL_LOG_LEVEL="WARNING",
        # A burst of 100 decisions on a loaded CI machine queues for SQLite's single writer for
        # longer than the 10 s default; the SDK's own timeout here is 60 s.
        AGENTCTL_DATABASE_POOL_TIMEOUT_SECONDS="60",
    )


@pytest.fixture(scope="module")
def server(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``agentctl serve`` on that database, shared by the tests of one module (each test makes
    its own agent, so tests do not see each other's data)."""
    data_dir = tmp_path_factory.mktemp("sdk-server")
    env = make_server_env(database, data_dir)
    port = free_port()
    log = data_dir / "server.log"
    with serving(env, log, port=port) as url:
        yield Server(url, database, env, log, port)


@dataclass
class Agent:
    agent_id: str
    client_id: str
    client_secret: str | None
    private_jwk: dict[str, Any] | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def key_pair(kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(private JWK, public JWK) of a fresh Ed25519 or P-256 key."""
    if kind == "Ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        public = {"kty": "OKP", "crv": "Ed25519", "x": _b64(key.public_key().public_bytes_raw())}
        private = {**public, "d": _b64(key.private_bytes_raw())}
        return private, public
    ec_key = ec.generate_private_key(ec.SECP256R1())
    numbers = ec_key.public_key().public_numbers()
    public = {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }
    d = ec_key.private_numbers().private_value.to_bytes(32, "big")
    return {**public, "d": _b64(d)}, public


def make_agent(
    server: Server,
    *,
    scopes: tuple[str, ...] = ("decisions:create", "audit:write"),
    key_kind: str | None = None,
) -> Agent:
    """A new credential of the ``refund-bot`` agent (the shipped policy grants it refunds;
    autonomy level 1: approval above 100), registered with an active version on first use.
    Each test gets its own credential, so its decisions and records are told apart by
    client id."""
    with httpx.Client(base_url=server.url, headers=server.admin, timeout=30) as c:
        r = c.post("/v1/domains", json={"name": "payments"})
        assert r.status_code in (201, 409), r.text
        r = c.post(
            "/v1/agents",
            json={
                "name": "refund-bot",
                "domain": "payments",
                "owner": "payments-team@example.com",
                "autonomy_level": 1,
            },
        )
        if r.status_code == 409:
            listed = c.get("/v1/agents", params={"domain": "payments"}).json()["data"]
            agent_id = next(a["id"] for a in listed if a["name"] == "refund-bot")
        else:
            assert r.status_code == 201, r.text
            agent_id = r.json()["id"]
            r = c.post(
                f"/v1/agents/{agent_id}/versions",
                json={
                    "version": "1.0.0",
                    "model_name": "gpt-test",
                    "model_version": "2026-01",
                    "artifact_digest": "sha256:" + "ab" * 32,
                },
            )
            assert r.status_code == 201, r.text
            version_id = r.json()["id"]
            for step in ("approve", "activate"):
                r = c.post(f"/v1/agents/{agent_id}/versions/{version_id}/{step}")
                assert r.status_code == 200, r.text
        body: dict[str, Any] = {"scopes": list(scopes)}
        private = None
        if key_kind is not None:
            private, body["public_jwk"] = key_pair(key_kind)
        r = c.post(f"/v1/agents/{agent_id}/credentials", json=body)
        assert r.status_code == 201, r.text
        cred = r.json()
    return Agent(agent_id, cred["client_id"], cred.get("client_secret"), private)


@pytest.fixture
def agent(server: Server) -> Agent:
    return make_agent(server)


def decisions_of(server: Server, agent: Agent) -> list[dict[str, Any]]:
    """Every decision the server recorded for this credential (operator API)."""
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"agent_id": agent.agent_id, "limit": 100}
    while True:
        r = httpx.get(f"{server.url}/v1/decisions", params=params, headers=server.admin, timeout=30)
        assert r.status_code == 200, r.text
        page = r.json()
        out.extend(d for d in page["data"] if d["client_id"] == agent.client_id)
        if not page["has_more"]:
            return out
        params["after"] = page["next_after"]


def audit_endpoint_available(server: Server) -> bool:
    spec = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    return "/v1/audit/records" in spec.get("paths", {})


@pytest.fixture
def needs_audit_endpoint(server: Server) -> None:
    """Delivery tests need ``POST /v1/audit/records`` (issue 9, branch i9-audit)."""
    if not audit_endpoint_available(server):
        pytest.skip("POST /v1/audit/records is not on this server yet (issue 9)")


# --- one suite, two clients ------------------------------------------------------------------


class SDK:
    """Calls either client with ``await``: the async one directly, the sync one in a thread.
    Tests written against this run unchanged over both."""

    def __init__(self, client: Client | AsyncClient) -> None:
        self.client = client
        self.is_async = isinstance(client, AsyncClient)

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        method: Callable[..., Any] = getattr(self.client, name)
        if self.is_async:
            return await method(*args, **kwargs)
        return await asyncio.to_thread(method, *args, **kwargs)

    async def decide(self, *args: Any, **kwargs: Any) -> Any:
        return await self.call("decide", *args, **kwargs)

    async def audit(self, *args: Any, **kwargs: Any) -> Any:
        return await self.call("audit", *args, **kwargs)

    async def audit_many(self, *args: Any, **kwargs: Any) -> Any:
        return await self.call("audit_many", *args, **kwargs)

    async def flush(self, *args: Any, **kwargs: Any) -> Any:
        return await self.call("flush", *args, **kwargs)

    async def close(self, *args: Any, **kwargs: Any) -> Any:
        return await self.call("close", *args, **kwargs)

    def pending(self) -> int:
        return self.client.pending()

    async def run_governed(
        self, action: str, resource: dict[str, Any], body: Callable[[Any], Any], **kw: Any
    ) -> Any:
        """Run ``body(act)`` inside ``governed()`` (``with`` or ``async with``)."""
        if isinstance(self.client, AsyncClient):
            async with self.client.governed(action, resource, **kw) as act:
                return body(act)
        client = self.client

        def run() -> Any:
            with client.governed(action, resource, **kw) as act:
                return body(act)

        return await asyncio.to_thread(run)


@pytest.fixture(params=["sync", "async"])
def client_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_sdk(
    client_kind: str, server: Server, tmp_path: Path
) -> AsyncIterator[Callable[..., SDK]]:
    """Build SDK clients of this test's kind against the real server; closed at the end."""
    made: list[SDK] = []

    def build(agent: Agent, **options: Any) -> SDK:
        options.setdefault("outbox_path", tmp_path / f"outbox-{agent.client_id}.sqlite3")
        options.setdefault("timeout", 60)  # a loaded CI machine must not turn into a failure
        if agent.private_jwk is not None and "client_secret" not in options:
            options.setdefault("private_key", agent.private_jwk)
        else:
            options.setdefault("client_secret", agent.client_secret)
        cls = AsyncClient if client_kind == "async" else Client
        sdk = SDK(cls(server.url, agent.client_id, **options))
        made.append(sdk)
        return sdk

    yield build
    for sdk in made:
        if isinstance(sdk.client, AsyncClient):
            await sdk.client.close(timeout=0)
        else:
            sdk.client.close(timeout=0)

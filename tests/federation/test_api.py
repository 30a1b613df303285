"""Enforcement points, the bundle service, and the log and status sinks, through HTTP (ASGI)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import sqlite3
import tarfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from control_plane.kit.inserts import table_of
from control_plane.models import Decision
from tests.federation.harness import start_plane
from tests.fixtures.decisions import REFUND, decider
from tests.fixtures.factories import bearer, create_domain
from tests.fixtures.oauth2 import basic


async def _point(
    client: httpx.AsyncClient, admin: dict[str, str], domain: str, name: str = "opa-1", **extra: Any
) -> dict[str, Any]:
    await create_domain(client, admin, domain)
    r = await client.post(
        f"/v1/domains/{domain}/enforcement-points",
        json={"name": name, "kind": "opa", **extra},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    point: dict[str, Any] = r.json()
    return point


async def _point_token(client: httpx.AsyncClient, point: dict[str, Any]) -> dict[str, str]:
    cred = point["credential"]
    r = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(cred["client_id"], cred["client_secret"]),
    )
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "bundles:read logs:write status:write"
    return bearer(r.json()["access_token"])


def _files(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        out = {}
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            assert handle is not None
            out[member.name.lstrip("/")] = handle.read()
        return out


async def test_point_registration_credential_and_listing(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    point = await _point(client, admin, "payments")
    cred = point["credential"]
    assert cred["client_secret"]
    assert cred["scopes"] == [
        "bundles:read",
        "logs:write",
        "status:write",
    ]
    assert point["last_contact_at"] is None
    assert point["bundle_revision"] is None
    again = await client.post(
        "/v1/domains/payments/enforcement-points",
        json={"name": "opa-1", "kind": "sdk"},
        headers=admin,
    )
    assert again.status_code == 409
    listed = (await client.get("/v1/domains/payments/enforcement-points", headers=admin)).json()
    assert [p["name"] for p in listed["data"]] == ["opa-1"]
    assert "client_secret" not in json.dumps(listed)
    # A point's token is no agent token.
    headers = await _point_token(client, point)
    assert (await client.get("/v1/agents/me", headers=headers)).status_code == 401
    missing = await client.get("/v1/domains/nowhere/enforcement-points", headers=admin)
    assert missing.status_code == 404


async def test_bundle_is_signed_scoped_to_its_domain_and_cached(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    own = await decider(client, admin, name="refund-bot", domain="payments")
    other = await decider(client, admin, name="claims-triage", domain="claims")
    headers = await _point_token(client, await _point(client, admin, "payments"))
    r = await client.get("/v1/bundles/payments", headers=headers)
    assert r.status_code == 200, r.text
    etag = r.headers["etag"]
    files = _files(r.content)
    manifest = json.loads(files[".manifest"])
    assert f'"{manifest["revision"]}"' == etag
    assert set(manifest["roots"]) >= {"agents", "authz", "federation"}
    assert {"agents/authz.rego", "federation/identity.rego", "data.json", "policy.wasm"} <= set(
        files
    )
    # The signature: one JWT over every file's SHA-256, by the published key.
    keys = (await client.get("/v1/federation/keys")).json()
    assert keys["algorithm"] == "ES256"
    assert "BEGIN PUBLIC KEY" in next(iter(keys["pem"].values()))
    (token,) = json.loads(files[".signatures.json"])["signatures"]
    verified = jws.deserialize_compact(token, KeySet.import_key_set({"keys": keys["keys"]}))
    listing = {f["name"]: f["hash"] for f in json.loads(verified.payload)["files"]}
    assert listing == {
        name: hashlib.sha256(blob).hexdigest()
        for name, blob in files.items()
        if name != ".signatures.json"
    }
    # Only this domain's registry and grants.
    data = json.loads(files["data.json"])
    assert data["federation"]["edge"] is True
    assert list(data["federation"]["agents"]) == [own["agent"]["id"]]
    assert other["agent"]["id"] not in files["data.json"].decode()
    assert set(data["authz"]["grants"]["agents"]) <= {"payments"}
    assert set(data["authz"]["grants"]["domains"]) <= {"payments"}
    assert data["federation"]["jwks"]["keys"]
    # ETag: unchanged content answers 304; a suspension is a new revision.
    same = await client.get("/v1/bundles/payments", headers={**headers, "If-None-Match": etag})
    assert same.status_code == 304
    assert same.headers["etag"] == etag
    r = await client.post(f"/v1/agents/{own['agent']['id']}/suspend", headers=admin)
    assert r.status_code == 200
    changed = await client.get("/v1/bundles/payments", headers={**headers, "If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    agent = json.loads(_files(changed.content)["data.json"])["federation"]["agents"]
    assert agent[own["agent"]["id"]]["status"] == "suspended"
    # The kill switch: a suspended domain's agents are all suspended in its next bundle.
    assert (await client.post(f"/v1/agents/{own['agent']['id']}/resume", headers=admin)).is_success
    resumed = await client.get("/v1/bundles/payments", headers=headers)
    agent = json.loads(_files(resumed.content)["data.json"])["federation"]["agents"]
    assert agent[own["agent"]["id"]]["status"] == "active"
    assert (await client.post("/v1/domains/payments/suspend", headers=admin)).is_success
    killed = await client.get(
        "/v1/bundles/payments", headers={**headers, "If-None-Match": resumed.headers["etag"]}
    )
    assert killed.status_code == 200
    agent = json.loads(_files(killed.content)["data.json"])["federation"]["agents"]
    assert agent[own["agent"]["id"]]["status"] == "suspended"


async def test_revoked_tokens_and_credentials_are_in_the_next_bundle(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    """An enforcement point verifies tokens offline: what it must refuse before they expire
    travels in the bundle (tokens by jti, credentials by client_id), as a new revision."""
    own = await decider(client, admin, name="refund-bot", domain="payments")
    point = await _point_token(client, await _point(client, admin, "payments"))

    async def revoked() -> tuple[str, dict[str, Any]]:
        r = await client.get("/v1/bundles/payments", headers=point)
        assert r.status_code == 200, r.text
        data = json.loads(_files(r.content)["data.json"])
        return r.headers["etag"], data["federation"]["revoked"]

    etag, listed = await revoked()
    assert listed == {"tokens": {}, "clients": {}}
    url = f"/v1/agents/{own['agent']['id']}/credentials"
    cred = (await client.post(url, json={"scopes": ["decisions:create"]}, headers=admin)).json()
    auth = basic(cred["client_id"], cred["client_secret"])
    grant = {"grant_type": "client_credentials"}
    token = (await client.post("/oauth/token", data=grant, headers=auth)).json()["access_token"]
    payload = token.split(".")[1]
    jti = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]
    r = await client.post("/oauth/revoke", data={"token": token}, headers=auth)
    assert r.status_code == 200, r.text
    after_token, listed = await revoked()
    assert after_token != etag
    assert listed == {"tokens": {jti: True}, "clients": {}}
    r = await client.post(f"{url}/{cred['client_id']}/revoke", headers=admin)
    assert r.status_code == 200, r.text
    after_cred, listed = await revoked()
    assert after_cred != after_token
    assert listed == {"tokens": {jti: True}, "clients": {cred["client_id"]: True}}


async def test_bundle_access_is_per_domain(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    payments = await _point_token(client, await _point(client, admin, "payments"))
    claims = await _point_token(client, await _point(client, admin, "claims"))
    assert (await client.get("/v1/bundles/payments", headers=payments)).status_code == 200
    assert (await client.get("/v1/bundles/claims", headers=payments)).status_code == 404
    assert (await client.get("/v1/bundles/nowhere", headers=claims)).status_code == 404
    assert (await client.get("/v1/bundles/payments")).status_code == 401
    agent = await decider(client, admin, name="refund-bot", domain="payments")
    assert (await client.get("/v1/bundles/payments", headers=agent["headers"])).status_code == 401


async def test_long_poll_answers_304_after_the_wait(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    headers = await _point_token(client, await _point(client, admin, "payments"))
    etag = (await client.get("/v1/bundles/payments", headers=headers)).headers["etag"]
    r = await client.get(
        "/v1/bundles/payments", headers={**headers, "If-None-Match": etag, "Prefer": "wait=1"}
    )
    assert r.status_code == 304
    assert r.headers["content-type"] == "application/vnd.openpolicyagent.bundles"


def _event(token: str, decision_id: str, **result: Any) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "path": "agents/authz/decision",
        "input": {"token": token, **REFUND, "agent": {"id": "forged"}},
        "result": result or {"effect": "allow", "allow": True, "reasons": [], "obligations": []},
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "123Z"),
        "metrics": {"timer_rego_query_eval_ns": 120000},
    }


async def test_decision_logs_are_recorded_once_with_audit_records(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    agent = await decider(client, admin, name="refund-bot", domain="payments")
    foreign = await decider(client, admin, name="claims-triage", domain="claims")
    point = await _point(client, admin, "payments")
    headers = await _point_token(client, point)
    token = agent["headers"]["Authorization"].removeprefix("Bearer ")
    ids = [str(uuid.uuid4()) for _ in range(3)]
    events = [
        _event(token, ids[0]),
        _event(token, ids[1], effect="deny", allow=False, reasons=["x"], obligations=[]),
        _event(foreign["headers"]["Authorization"].removeprefix("Bearer "), ids[2]),
        _event("not-a-token", str(uuid.uuid4())),
    ]
    body = gzip.compress(json.dumps(events).encode())
    r = await client.post("/v1/logs", content=body, headers={**headers, "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["accepted"], result["duplicates"]) == (2, 0)
    assert sorted(x["reason"] for x in result["rejected"]) == [
        "agent_of_another_domain",
        "token_invalid",
    ]
    again = await client.post("/v1/logs", json=events[:2], headers=headers)
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 2)
    decisions = (await client.get("/v1/decisions", headers=admin)).json()["data"]
    edge = {d["id"]: d for d in decisions if d["engine"] == "opa"}
    assert set(edge) == set(ids[:2])
    assert edge[ids[0]]["agent_id"] == agent["agent"]["id"]
    assert edge[ids[1]]["effect"] == "deny"
    for decision_id in ids[:2]:
        record = await client.get(f"/v1/audit/records/{decision_id}", headers=admin)
        assert record.status_code == 200, record.text
        stored = record.json()["record"]
        assert stored["kind"] == "decision"
        assert stored["source"]["name"] == "opa-1"
        assert stored["agent"]["name"] == "refund-bot"
    # The agent's token is a bearer credential: never stored.
    assert token not in json.dumps(decisions)
    # A time with no UTC equivalent is a bad event, rejected by name, not a 500.
    beyond = {**_event(token, str(uuid.uuid4())), "timestamp": "9999-12-31T23:59:59-23:59"}
    r = await client.post("/v1/logs", json=[beyond], headers=headers)
    assert r.status_code == 200, r.text
    assert [x["reason"] for x in r.json()["rejected"]] == ["event_invalid"]


async def test_logs_need_a_point_token_with_logs_write(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    agent = await decider(client, admin, name="refund-bot", domain="payments")
    assert (await client.post("/v1/logs", json=[], headers=agent["headers"])).status_code == 401
    headers = await _point_token(client, await _point(client, admin, "payments"))
    bad = await client.post("/v1/logs", content=b"\x1f\x8bnot gzip", headers=headers)
    assert bad.status_code == 422
    assert (await client.post("/v1/logs", content=b"{", headers=headers)).status_code == 422
    assert (await client.post("/v1/logs", json=[], headers=headers)).json()["accepted"] == 0


@pytest.mark.parametrize("error", [True, False])
async def test_status_reports_update_the_point(
    client: httpx.AsyncClient, admin: dict[str, str], error: bool
) -> None:
    headers = await _point_token(client, await _point(client, admin, "payments"))
    bundle = {"name": "federation", "active_revision": "sha256:abc"}
    if error:
        bundle |= {"code": "bundle_error", "message": "signature verification failed"}
    r = await client.post("/v1/status", json={"bundles": {"federation": bundle}}, headers=headers)
    assert r.status_code == 204, r.text
    point = (
        await client.get("/v1/domains/payments/enforcement-points/opa-1", headers=admin)
    ).json()
    assert point["bundle_revision"] == "sha256:abc"
    assert point["last_contact_at"] is not None
    expected = "bundle_error: signature verification failed" if error else None
    assert point["last_error"] == expected
    assert (await client.post("/v1/status", json=[1], headers=headers)).status_code == 422


def test_prefer_wait_is_read_as_opa_sends_it() -> None:
    from control_plane.federation.service import wait_seconds

    assert wait_seconds("modes=snapshot,delta;wait=30") == 30
    assert wait_seconds("wait=5") == 5
    assert wait_seconds("wait=600") == 60
    assert wait_seconds("modes=snapshot,delta") == 0
    assert wait_seconds("wait=x") == 0
    assert wait_seconds(None) == 0


async def test_a_changed_grant_activated_is_a_new_bundle_revision(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    from pathlib import Path

    from control_plane.policy.bundles import read_policy_dir

    headers = await _point_token(client, await _point(client, admin, "payments"))
    first = await client.get("/v1/bundles/payments", headers=headers)
    source = read_policy_dir(Path(__file__).parents[2] / "policies")
    source.data["authz"]["grants"]["domains"]["payments"].append("crm.customer.read")
    r = await client.post(
        "/v1/policies/default/revisions",
        json={"modules": source.modules, "data": source.data},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    # Stored but not active: the bundle does not change.
    same = await client.get(
        "/v1/bundles/payments", headers={**headers, "If-None-Match": first.headers["etag"]}
    )
    assert same.status_code == 304
    r = await client.post(
        f"/v1/policies/default/revisions/{r.json()['revision']}/activate", headers=admin
    )
    assert r.status_code == 200, r.text
    changed = await client.get(
        "/v1/bundles/payments", headers={**headers, "If-None-Match": first.headers["etag"]}
    )
    assert changed.status_code == 200
    grants = json.loads(_files(changed.content)["data.json"])["authz"]["grants"]
    assert "crm.customer.read" in grants["domains"]["payments"]
    manifest = json.loads(_files(changed.content)[".manifest"])
    assert manifest["metadata"]["policy"]["revision"] == 2


async def test_point_clients_by_post_and_by_private_key_jwt(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    from control_plane.crypto.signing import generate_signing_key
    from tests.fixtures.oauth2 import assertion, token_by_assertion

    posted = await _point(
        client, admin, "payments", "sdk-1", token_endpoint_auth_method="client_secret_post"
    )
    cred = posted["credential"]
    form = {"grant_type": "client_credentials", "client_id": cred["client_id"]}
    r = await client.post("/oauth/token", data={**form, "client_secret": cred["client_secret"]})
    assert r.status_code == 200, r.text
    # Registered for the form: HTTP Basic is refused, and so is a wrong secret.
    basic_try = await client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic(cred["client_id"], cred["client_secret"]),
    )
    assert basic_try.status_code == 401
    wrong = await client.post("/oauth/token", data={**form, "client_secret": "acp_cs_wrong"})
    assert wrong.status_code == 401

    key = generate_signing_key("ES256")
    keyed = await _point(
        client,
        admin,
        "payments",
        "opa-jwt",
        token_endpoint_auth_method="private_key_jwt",
        jwks={"keys": [key.public_jwk()]},
    )
    assert keyed["credential"]["client_secret"] is None
    r = await token_by_assertion(client, assertion(key, keyed["credential"]["client_id"]))
    assert r.status_code == 200, r.text
    headers = bearer(r.json()["access_token"])
    assert (await client.get("/v1/bundles/payments", headers=headers)).status_code == 200
    no_key = await client.post(
        "/v1/domains/payments/enforcement-points",
        json={"name": "opa-x", "kind": "opa", "token_endpoint_auth_method": "private_key_jwt"},
        headers=admin,
    )
    assert no_key.status_code == 422


async def test_a_decision_uploaded_twice_at_once_is_stored_once(
    client: httpx.AsyncClient, admin: dict[str, str], db_url: str, is_postgres: bool
) -> None:
    agent = await decider(client, admin, name="refund-bot", domain="payments")
    headers = await _point_token(client, await _point(client, admin, "payments"))
    token = agent["headers"]["Authorization"].removeprefix("Bearer ")
    decision_id = str(uuid.uuid4())
    # Another upload of the same decision, caught in the middle: its row is written, not yet
    # committed, when this upload looks for it (and finds nothing); it commits while this one
    # inserts. PostgreSQL then refuses this one's row (unique violation); SQLite makes this one
    # wait for the write lock, then find the row.
    other = create_async_engine(db_url)
    try:
        async with other.connect() as conn:
            transaction = await conn.begin()
            await conn.execute(insert(table_of(Decision)).values(_stored(decision_id, agent)))
            upload = asyncio.create_task(
                client.post("/v1/logs", json=[_event(token, decision_id)], headers=headers)
            )
            await _until_blocked(conn, is_postgres)
            assert not upload.done()
            await transaction.commit()
            r = await upload
    finally:
        await other.dispose()
    assert r.status_code == 200, r.text
    assert (r.json()["accepted"], r.json()["duplicates"]) == (0, 1)
    listed = (await client.get("/v1/decisions", headers=admin)).json()["data"]
    assert [d["id"] for d in listed] == [decision_id]


def _stored(decision_id: str, agent: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": uuid.UUID(decision_id),
        "agent_id": uuid.UUID(agent["agent"]["id"]),
        "domain": "payments",
        "client_id": uuid.uuid4(),
        "action": "payments.refund",
        "resource": {},
        "input_digest": "sha256:" + "0" * 64,
        "effect": "allow",
        "allow": True,
        "reasons": [],
        "obligations": [],
        "bundle": "default",
        "engine": "opa",
        "latency_ms": 0.0,
        "created_at": datetime.now(UTC),
    }


async def _until_blocked(conn: AsyncConnection, is_postgres: bool) -> None:
    """Until the upload waits on the row's lock (PostgreSQL), or a moment (SQLite: it waits on
    the write lock from its first statement)."""
    if not is_postgres:
        await asyncio.sleep(0.5)
        return
    for _ in range(600):
        # Inside a transaction the activity view is read once, unless its snapshot is cleared.
        await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        waiting = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%INSERT INTO decisions%'"
            )
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the upload never waited on the row")


@asynccontextmanager
async def _point_writes_held(db_url: str) -> AsyncIterator[None]:
    """Another client holds what writing a point's last contact needs: SQLite's write lock
    (``BEGIN IMMEDIATE``), or on PostgreSQL a lock on ``enforcement_points`` that readers pass."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        held = sqlite3.connect(str(url.database), isolation_level=None)
        held.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            held.execute("ROLLBACK")
            held.close()
        return
    conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE enforcement_points IN SHARE ROW EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


async def test_a_bundle_answer_never_waits_for_the_points_contact_write(
    db_url: str, tmp_path: Path
) -> None:
    """A new revision reaches a point even while the database cannot take the bookkeeping write
    (last contact, revision served): that write follows the answer, it does not precede it."""
    with start_plane(db_url, tmp_path) as plane:
        plane.domain("payments")
        point = plane.point("payments", "opa-1")
        token = plane.token(point["credential"]["client_id"], point["credential"]["client_secret"])
        shown_path = plane.url + "/v1/domains/payments/enforcement-points/opa-1"
        async with httpx.AsyncClient(verify=plane.tls, timeout=20) as http:
            async with _point_writes_held(db_url):
                r = await http.get(
                    plane.url + "/v1/bundles/payments", headers={"Authorization": f"Bearer {token}"}
                )
                assert r.status_code == 200, r.text
                revision = r.headers["etag"].strip('"')
                shown = (await http.get(shown_path, headers=plane.admin)).json()
                assert shown["last_contact_at"] is None  # not written while the lock is held
            for _ in range(100):  # written once the lock is released
                shown = (await http.get(shown_path, headers=plane.admin)).json()
                if shown["last_contact_at"] is not None:
                    break
                await asyncio.sleep(0.1)
            assert shown["bundle_revision"] == revision, shown
            assert shown["last_contact_at"] is not None

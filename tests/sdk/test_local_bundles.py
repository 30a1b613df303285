"""Local mode against bundles built and signed by the pinned OPA (OPA's builder is the reference
for the format), served by a small bundle server: what is verified before use, what is kept
on disk, the staleness bound, the agent's identity from its token, decision logs and status.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_sdk import AgentControlPlaneError, AsyncClient, Client, LocalOptions, VerificationKey
from agent_sdk._bundle import BundleError, file_hash, verify_bundle
from tests.fixtures.tls import contexts
from tests.sdk.localmode import (
    AGENT_CLIENT,
    AGENT_ID,
    AGENT_SECRET,
    DOMAIN,
    EP_CLIENT,
    EP_SECRET,
    OTHER_AGENT_ID,
    BundleServer,
    TokenKey,
    agent_doc,
    bundle_data,
    bundle_server,
    members,
    needs_opa,
    opa_build,
    pack,
    resign,
    rsa_pem,
    wait_for,
)

pytestmark = needs_opa

SMALL = {"type": "order", "id": "o-1001", "amount": 40, "region": "eu-west-1"}
LARGE = {"type": "order", "id": "o-1002", "amount": 9000, "region": "eu-west-1"}


class Built:
    """Every bundle these tests need, built once per module by the pinned OPA."""

    def __init__(self, workdir: Path) -> None:
        self.private, self.public = rsa_pem()
        self.other_private, self.other_public = rsa_pem()
        self.token_key = TokenKey()
        data = bundle_data(self.token_key)
        self.good = opa_build(workdir, data, self.private)
        suspended = bundle_data(self.token_key, agents={AGENT_ID: agent_doc(status="suspended")})
        self.suspended = opa_build(workdir, suspended, self.private)
        self.short = opa_build(
            workdir, bundle_data(self.token_key, max_staleness_seconds=1), self.private
        )
        self.by_other_key = opa_build(workdir, data, self.other_private)
        self.by_unknown_kid = opa_build(workdir, data, self.other_private, key_id="someone-else")

    def keys(self) -> list[VerificationKey]:
        return [VerificationKey("bundle-key", self.public)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return Built(tmp_path_factory.mktemp("bundles"))


@pytest.fixture
def server(built: Built) -> Iterator[BundleServer]:
    with bundle_server(built.token_key) as srv:
        srv.publish(built.good)
        yield srv


def options(built: Built, cache: Path, **extra: Any) -> LocalOptions:
    settings: dict[str, Any] = {
        "domain": DOMAIN,
        "client_id": EP_CLIENT,
        "client_secret": EP_SECRET,
        "bundle_keys": built.keys(),
        "cache_dir": cache,
        "poll_interval": 0.1,
        "long_poll": 0,
        "status_interval": 0.2,
        "log_interval": 0.05,
    }
    settings.update(extra)
    return LocalOptions(**settings)


def local_client(server: BundleServer, built: Built, tmp_path: Path, **extra: Any) -> Client:
    return Client(
        server.url,
        AGENT_CLIENT,
        AGENT_SECRET,
        outbox_path=tmp_path / "audit.sqlite3",
        max_retries=0,
        mode="local",
        local=options(built, tmp_path / "cache", **extra),
    )


# A policy that runs far past the local engine's 1 s evaluation deadline: 36 million
# comparisons of data.big's numbers, allocating nothing (OPA's wasm heap would run out first).
_SLOW_POLICY = """package agents.authz

slow if {
\tsome x in data.big
\tsome y in data.big
\tx > y
\ty > x
}

decision := {"allow": true, "effect": "allow", "reasons": [], "obligations": []} if not slow
"""


def test_an_evaluation_past_its_deadline_denies_engine_timeout(
    built: Built, tmp_path: Path
) -> None:
    """Named as the centre names it, so an operator can tell a busy or looping policy from a
    broken engine."""
    data = {**bundle_data(built.token_key), "big": list(range(6000))}
    slow = opa_build(tmp_path, data, built.private, policy=_SLOW_POLICY)
    with bundle_server(built.token_key) as srv:
        srv.publish(slow)
        with local_client(srv, built, tmp_path) as client:
            started = time.monotonic()
            decision = client.decide("payments.refund", SMALL)
            assert (decision.effect, decision.reasons) == ("deny", ["engine_timeout"])
            assert time.monotonic() - started < 10


def test_a_longer_eval_timeout_lets_the_same_slow_policy_finish(
    built: Built, tmp_path: Path
) -> None:
    data = {**bundle_data(built.token_key), "big": list(range(6000))}
    slow = opa_build(tmp_path, data, built.private, policy=_SLOW_POLICY)
    with bundle_server(built.token_key) as srv:
        srv.publish(slow)
        with local_client(srv, built, tmp_path, eval_timeout=300) as client:
            decision = client.decide("payments.refund", SMALL)
    assert (decision.effect, decision.reasons) == ("allow", [])


@pytest.mark.parametrize("seconds", [0, -1, 3601])
def test_an_eval_timeout_out_of_bounds_is_refused_at_construction(
    server: BundleServer, built: Built, tmp_path: Path, seconds: float
) -> None:
    with pytest.raises(AgentControlPlaneError, match="eval_timeout"):
        local_client(server, built, tmp_path, eval_timeout=seconds)


# --- the signature, before anything is used ------------------------------------------------------


def test_a_bundle_built_by_opa_verifies_and_hashes_as_opa_hashes(built: Built) -> None:
    bundle = verify_bundle(built.good, {"bundle-key": built.keys()[0]})
    _, payload = _payload(built.good)
    listed = {f["name"]: f["hash"] for f in payload["files"]}
    assert set(listed) == set(bundle.files)
    for name, content in bundle.files.items():
        assert file_hash(name, content) == listed[name]


def test_opa_json_hash_is_independent_of_layout_and_keeps_number_literals(tmp_path: Path) -> None:
    """OPA hashes data.json over the parsed JSON: keys sorted, numbers as written, strings as
    Go writes them (U+2028 escaped, <>& not)."""
    private, public = rsa_pem()
    tricky = {
        "z": [1.0, 1e5, -0, 12345678901234567890, 0.1],
        "a": {"é\u2028<&>": 'line\nbreak\ttab \u0001 "q" \\', "\U0001f600": None},
        "m": [True, False, {}, []],
    }
    raw = opa_build(tmp_path, tricky, private)
    bundle = verify_bundle(raw, {"bundle-key": VerificationKey("bundle-key", public)})
    assert bundle.data["z"][1] == 1e5


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("one_byte_in_wasm", "digest_mismatch"),
        ("one_byte_in_data", "digest_mismatch"),
        ("signature_byte", "bad_signature"),
        ("missing_file_hash", "file_not_signed"),
        ("listed_file_absent", "file_missing"),
        ("extra_file", "file_not_signed"),
        ("no_signature", "unsigned"),
        ("other_key_same_kid", "bad_signature"),
        ("unknown_kid", "unknown_key"),
        ("wrong_scope", "scope_mismatch"),
        ("not_gzip", "malformed"),
    ],
)
def test_a_tampered_bundle_is_refused(built: Built, tamper: str, reason: str) -> None:
    raw = _tampered(built, tamper)
    with pytest.raises(BundleError) as caught:
        verify_bundle(raw, {"bundle-key": built.keys()[0]})
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "tamper",
    ["one_byte_in_wasm", "signature_byte", "missing_file_hash", "other_key_same_kid"],
)
def test_the_sdk_refuses_a_bad_bundle_and_keeps_deciding_on_the_last_good_one(
    server: BundleServer, built: Built, tmp_path: Path, tamper: str
) -> None:
    with local_client(server, built, tmp_path) as client:
        assert client.decide("payments.refund", SMALL).allow
        federation = client._federation
        assert federation is not None
        good_revision = federation.revision
        # The server now serves a bad bundle in which the agent is suspended.
        server.publish(_tampered(built, tamper, base=built.suspended))
        assert wait_for(lambda: _bundle_error(server) is not None)
        assert federation.revision == good_revision
        decision = client.decide("payments.refund", SMALL)
        assert decision.allow, decision.reasons  # the last good bundle still decides
        # The refusal reaches the centre through the status report.
        assert _bundle_error(server) in {"digest_mismatch", "bad_signature", "file_not_signed"}


def test_a_new_good_bundle_takes_over_and_a_suspension_denies(
    server: BundleServer, built: Built, tmp_path: Path
) -> None:
    with local_client(server, built, tmp_path) as client:
        assert client.decide("payments.refund", SMALL).allow
        server.publish(built.suspended)
        started = time.monotonic()
        assert wait_for(lambda: not client.decide("payments.refund", SMALL).allow)
        print(f"suspension denied at the SDK after {time.monotonic() - started:.2f} s")
        assert client.decide("payments.refund", SMALL).reasons == ["agent_not_active"]


def test_long_polling_brings_a_change_without_waiting_for_the_poll_interval(
    server: BundleServer, built: Built, tmp_path: Path
) -> None:
    with local_client(server, built, tmp_path, poll_interval=30, long_poll=20) as client:
        assert client.decide("payments.refund", SMALL).allow
        time.sleep(0.3)  # the pull is now held open by the server
        server.publish(built.suspended)
        started = time.monotonic()
        assert wait_for(lambda: not client.decide("payments.refund", SMALL).allow, 5)
        took = time.monotonic() - started
        print(f"long polling: suspension denied at the SDK after {took:.2f} s")
        assert took < 5


# --- on disk -------------------------------------------------------------------------------------


def test_the_last_good_bundle_is_kept_on_disk_and_decides_after_a_restart(
    server: BundleServer, built: Built, tmp_path: Path
) -> None:
    with local_client(server, built, tmp_path) as client:
        assert client.decide("payments.refund", SMALL).allow
        client.flush(10)
    stored = tmp_path / "cache" / "bundle" / "bundle.tar.gz"
    assert stored.read_bytes() == built.good
    assert not list(stored.parent.glob(".*"))  # no temporary file left behind
    # The bundle service is out: the restarted client decides from disk (with a fresh agent
    # token: a new process holds none, and tokens are not kept on disk).
    server.bundles_down = True
    with local_client(server, built, tmp_path) as client:
        assert client._federation is not None
        assert client._federation.revision is not None
        assert client.decide("payments.refund", SMALL).allow


def test_a_bundle_changed_on_disk_is_refused_at_start(
    server: BundleServer, built: Built, tmp_path: Path
) -> None:
    with local_client(server, built, tmp_path) as client:
        assert client.decide("payments.refund", SMALL).allow
    stored = tmp_path / "cache" / "bundle" / "bundle.tar.gz"
    stored.write_bytes(_tampered(built, "one_byte_in_data"))
    server.bundles_down = True
    with local_client(server, built, tmp_path, bundle_wait=0.5) as client:
        decision = client.decide("payments.refund", SMALL)
    assert not decision.allow
    assert decision.reasons[0].startswith("engine_not_loaded")


def test_the_points_own_http_client_reaches_a_centre_behind_a_private_ca(
    built: Built, tmp_path: Path
) -> None:
    """The agent's ``http_client`` trusts the private CA; the enforcement point sends with
    ``LocalOptions.http_client``, not a default client that would refuse the certificate."""
    server_tls, trust = contexts(tmp_path)

    def client(cache: str, **extra: Any) -> Client:
        return Client(
            server.url,
            AGENT_CLIENT,
            AGENT_SECRET,
            outbox_path=tmp_path / f"{cache}.sqlite3",
            max_retries=0,
            http_client=httpx.Client(verify=trust),
            mode="local",
            local=options(built, tmp_path / cache, **extra),
        )

    with bundle_server(built.token_key, tls=server_tls) as server:
        server.publish(built.good)
        # A point without one pulls with the system's CAs: no bundle, so it denies.
        with client("default", bundle_wait=0.5) as agent:
            refused = agent.decide("payments.refund", SMALL)
        assert not refused.allow
        assert refused.reasons[0].startswith("engine_not_loaded")
        assert server.bundle_requests == 0

        point_http = httpx.Client(verify=trust)
        with client("own", http_client=point_http) as agent:
            decision = agent.decide("payments.refund", SMALL)
            assert decision.allow
            assert decision.engine == "sdk"
            assert agent.flush(20)
        assert str(decision.decision_id) in server.logs
        assert point_http.is_closed  # closed with the client: it was the point's


def test_the_points_http_client_cannot_be_the_agents_own(built: Built, tmp_path: Path) -> None:
    shared = httpx.Client()
    with pytest.raises(AgentControlPlaneError, match=r"LocalOptions\.http_client"):
        Client(
            "http://127.0.0.1:9",
            AGENT_CLIENT,
            AGENT_SECRET,
            outbox_path=tmp_path / "audit.sqlite3",
            http_client=shared,
            mode="local",
            local=options(built, tmp_path / "cache", http_client=shared),
        )
    assert not shared.is_closed
    shared.close()


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def test_a_token_the_bundle_lists_as_revoked_is_refused_and_replaced(
    built: Built, tmp_path: Path
) -> None:
    """RFC 7009 at the edge: the bundle lists revoked tokens by jti. The decision with the
    revoked token is a deny; the SDK fetches a new token in the background (never waiting on
    the centre), and decides with it from then on."""
    with bundle_server(built.token_key) as srv:
        revoked_jti = _claims(srv.agent_token)["jti"]
        data = bundle_data(built.token_key, revoked={"tokens": {revoked_jti: True}, "clients": {}})
        srv.publish(opa_build(tmp_path, data, built.private))
        with local_client(srv, built, tmp_path) as client:
            refused = client.decide("payments.refund", SMALL)
            assert (refused.effect, refused.reasons) == ("deny", ["agent_missing"])
            srv.agent_token = built.token_key.token()  # what /oauth/token hands out now
            assert wait_for(lambda: client.decide("payments.refund", SMALL).allow)
            assert client.flush(20)
        logged = [srv.logs[str(refused.decision_id)]]
        assert _claims(logged[0]["input"]["token"])["jti"] == revoked_jti


def test_a_token_of_a_revoked_credential_is_refused(built: Built, tmp_path: Path) -> None:
    with bundle_server(built.token_key) as srv:
        data = bundle_data(built.token_key, revoked={"tokens": {}, "clients": {AGENT_CLIENT: True}})
        srv.publish(opa_build(tmp_path, data, built.private))
        with local_client(srv, built, tmp_path) as client:
            decisions = [client.decide("payments.refund", SMALL) for _ in range(3)]
    assert [(d.effect, d.reasons) for d in decisions] == [("deny", ["agent_missing"])] * 3


def test_a_point_that_cannot_pull_says_so_once_in_its_log(
    server: BundleServer, built: Built, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A misspelt domain (or a wrong secret) is not a silent 'no bundle yet' deny."""
    caplog.set_level(logging.WARNING, logger="agent_sdk")
    with local_client(server, built, tmp_path, domain="nosuch", bundle_wait=1) as client:
        decision = client.decide("payments.refund", SMALL)
        assert wait_for(lambda: server.bundle_requests == 0 and len(caplog.records) > 0)
        time.sleep(0.5)  # several more pulls fail meanwhile (poll_interval 0.1 s)
    assert decision.reasons[0].startswith("engine_not_loaded")
    failed = [r.getMessage() for r in caplog.records if "bundle pull" in r.getMessage()]
    assert len(failed) == 1, failed
    assert "nosuch" in failed[0]
    assert "http_404" in failed[0]


def test_close_does_not_wait_for_a_pull_held_open(
    server: BundleServer, built: Built, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing the transport does not interrupt a blocked read; close() does not wait for the
    server to answer a held pull (30 s here), and the pull ending later is no failure."""
    caplog.set_level(logging.WARNING, logger="agent_sdk")
    client = local_client(server, built, tmp_path, long_poll=30)
    assert client.decide("payments.refund", SMALL).allow
    assert client.flush(20)
    time.sleep(0.5)  # the point is in a long poll on the current revision now
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 3  # it waited 5 s before, whatever was pending
    server.publish(built.suspended)  # answers the held pull: after close, nothing happens
    time.sleep(0.5)
    assert not [r for r in caplog.records if "bundle" in r.getMessage()], caplog.text


# --- staleness -----------------------------------------------------------------------------------


def test_past_max_staleness_without_a_pull_decisions_deny_policy_stale(
    server: BundleServer, built: Built, tmp_path: Path
) -> None:
    server.publish(built.short)  # the bundle says: 1 s
    with local_client(server, built, tmp_path) as client:
        assert client.decide("payments.refund", SMALL).allow
        server.down = True
        went_down = time.monotonic()
        decided = 0
        while client.decide("payments.refund", SMALL).allow:
            decided += 1
            time.sleep(0.05)
        offline = time.monotonic() - went_down
        print(f"offline: {decided} decisions allowed for {offline:.2f} s, then policy_stale")
        assert 0.8 <= offline < 3
        assert client.decide("payments.refund", SMALL).reasons == ["policy_stale"]
        server.down = False  # the centre returns: decisions resume
        assert wait_for(lambda: client.decide("payments.refund", SMALL).allow)


def test_long_polling_never_lets_decisions_go_stale_and_a_restart_decides_at_once(
    server: BundleServer, built: Built, tmp_path: Path
) -> None:
    """The staleness clock restarts when a pull is answered. A held pull is answered within a
    third of the bound (a 304 for an unchanged bundle), so a healthy centre never lets
    decisions go stale; after a restart past the bound, the first pull is answered at once."""
    settings = {"long_poll": 30, "max_staleness_seconds": 3, "poll_interval": 0.1}
    with local_client(server, built, tmp_path, **settings) as client:
        assert client.decide("payments.refund", SMALL).allow
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # long polls held open meanwhile, none changed
            decision = client.decide("payments.refund", SMALL)
            assert decision.allow, decision.reasons
            time.sleep(0.25)
        assert client.flush(20)
    time.sleep(4)  # the stored bundle is past its bound now
    with local_client(server, built, tmp_path, **settings) as client:
        started = time.monotonic()
        assert wait_for(lambda: client.decide("payments.refund", SMALL).allow, timeout=10)
        assert time.monotonic() - started < 10


def test_a_local_setting_shortens_the_bound_and_never_lengthens_it(
    server: BundleServer, built: Built, tmp_path: Path
) -> None:
    with local_client(server, built, tmp_path, max_staleness_seconds=0.5) as client:
        assert client._federation is not None
        client.decide("payments.refund", SMALL)
        assert client._federation.max_staleness() == 0.5
    server.publish(built.short)
    with local_client(server, built, tmp_path / "b", max_staleness_seconds=999) as client:
        assert client._federation is not None
        client.decide("payments.refund", SMALL)
        assert wait_for(lambda: client._federation.max_staleness() == 1.0)  # type: ignore[union-attr]


def test_a_restart_does_not_reset_staleness(
    server: BundleServer, built: Built, tmp_path: Path
) -> None:
    server.publish(built.short)
    with local_client(server, built, tmp_path) as client:
        assert client.decide("payments.refund", SMALL).allow
    server.bundles_down = True
    time.sleep(1.2)
    with local_client(server, built, tmp_path) as client:
        assert client.decide("payments.refund", SMALL).reasons == ["policy_stale"]


def test_a_due_token_refresh_never_holds_up_a_local_decision(
    server: BundleServer, built: Built, tmp_path: Path
) -> None:
    """The held token decides while its refresh runs in the background, however slow the
    centre is (the token itself is still valid; the bundle's keys judge it)."""
    server.token_expires_in = 1  # the SDK refreshes after 0.9 s
    with local_client(server, built, tmp_path) as client:
        assert client.decide("payments.refund", SMALL).allow
        server.token_delay = 5  # a centre that hangs
        time.sleep(1.2)
        started = time.perf_counter()
        decisions = [client.decide("payments.refund", SMALL) for _ in range(20)]
        took = time.perf_counter() - started
    assert all(d.allow for d in decisions)
    assert took < 2, f"20 local decisions took {took:.2f} s while the token refresh hung"


# --- identity ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token_kind", ["other_domain", "expired", "unknown_agent", "forged", "unknown_kid", "garbage"]
)
def test_the_agent_comes_from_a_verified_token_only(
    server: BundleServer, built: Built, tmp_path: Path, token_kind: str
) -> None:
    key = built.token_key
    tokens = {
        "other_domain": key.token(domain="claims"),
        "expired": key.token(lifetime=-120),
        "unknown_agent": key.token(sub=OTHER_AGENT_ID),
        "forged": TokenKey(kid=key.kid).token(),
        "unknown_kid": TokenKey(kid="tok-9").token(),
        "garbage": "not.a.token",
    }
    server.agent_token = tokens[token_kind]
    with local_client(server, built, tmp_path) as client:
        # Whatever the caller puts in the request, the agent is the token's (here: none).
        decision = client.decide(
            "payments.refund", SMALL, {"agent": agent_doc(), "vouched": {"time": "x"}}
        )
    assert (decision.effect, decision.reasons) == ("deny", ["agent_missing"])


# --- decision logs and status --------------------------------------------------------------------


def test_every_decision_is_logged_once_in_opa_format_even_across_outages(
    server: BundleServer, built: Built, tmp_path: Path
) -> None:
    ids = []
    with local_client(server, built, tmp_path) as client:
        server.fail_logs = True
        ids += [client.decide("payments.refund", SMALL).decision_id for _ in range(5)]
        time.sleep(0.3)
        assert client.pending_decision_logs() == 5
        server.fail_logs = False
        ids += [client.decide("payments.refund", LARGE).decision_id for _ in range(5)]
        assert client.flush(20)
    assert sorted(server.logs) == sorted(str(i) for i in ids)
    event = server.logs[str(ids[-1])]
    assert event["path"] == "agents/authz/decision"
    assert event["input"]["token"] == server.agent_token
    assert event["input"]["resource"] == LARGE
    assert event["result"]["effect"] == "require_approval"
    assert event["labels"]["kind"] == "sdk"
    assert event["bundles"]["federation"]["revision"] is not None
    assert server.statuses
    assert server.statuses[-1]["labels"]["id"] == EP_CLIENT


def test_decision_logs_left_by_a_closed_client_are_delivered_by_the_next(
    server: BundleServer, built: Built, tmp_path: Path
) -> None:
    server.fail_logs = True
    with local_client(server, built, tmp_path) as client:
        decided = client.decide("payments.refund", SMALL).decision_id
        client.close(timeout=0.2)
    assert str(decided) not in server.logs
    server.fail_logs = False
    with local_client(server, built, tmp_path) as client:
        assert client.flush(20)
    assert str(decided) in server.logs


async def test_the_async_client_decides_locally_too(
    server: BundleServer, built: Built, tmp_path: Path
) -> None:
    async with AsyncClient(
        server.url,
        AGENT_CLIENT,
        AGENT_SECRET,
        outbox_path=tmp_path / "audit.sqlite3",
        mode="local",
        local=options(built, tmp_path / "cache"),
    ) as client:
        decisions = await asyncio.gather(
            *(client.decide("payments.refund", SMALL) for _ in range(3))
        )
        assert all(d.allow and d.engine == "sdk" for d in decisions)
        assert await client.flush(20)
    assert {str(d.decision_id) for d in decisions} <= set(server.logs)


def test_without_the_local_extra_the_error_names_it(
    server: BundleServer, built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opapywasm", None)
    with pytest.raises(
        AgentControlPlaneError, match=r"pip install 'agent-control-plane-sdk\[local\]'"
    ):
        local_client(server, built, tmp_path)


# --- helpers -------------------------------------------------------------------------------------


def _payload(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    from tests.sdk.localmode import signed_payload

    return signed_payload(raw)


def _bundle_error(server: BundleServer) -> str | None:
    for status in reversed(server.statuses):
        code = status["bundles"]["federation"].get("code")
        if code:
            return str(code)
    return None


def _tampered(built: Built, how: str, base: bytes | None = None) -> bytes:
    raw = base or built.good
    files = members(raw)
    if how == "one_byte_in_wasm":
        wasm = bytearray(files["/policy.wasm"])
        wasm[len(wasm) // 2] ^= 0x01
        files["/policy.wasm"] = bytes(wasm)
        return pack(files)
    if how == "one_byte_in_data":
        files["/data.json"] = files["/data.json"].replace(b"eu-west-1", b"eu-west-2", 1)
        return pack(files)
    if how == "signature_byte":
        sigs = json.loads(files["/.signatures.json"])
        token = sigs["signatures"][0]
        head, body, sig = token.split(".")
        raw_sig = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
        raw_sig[10] ^= 0x01
        sigs["signatures"] = [
            f"{head}.{body}.{base64.urlsafe_b64encode(raw_sig).rstrip(b'=').decode()}"
        ]
        files["/.signatures.json"] = json.dumps(sigs).encode()
        return pack(files)
    if how == "missing_file_hash":
        return resign(
            raw,
            built.private,
            lambda p: p.update(files=[f for f in p["files"] if f["name"] != "policy.wasm"]),
        )
    if how == "listed_file_absent":
        return resign(
            raw,
            built.private,
            lambda p: p["files"].append(
                {"name": "extra.rego", "hash": "00" * 32, "algorithm": "SHA-256"}
            ),
        )
    if how == "extra_file":
        files["/extra.rego"] = b"package extra\n"
        return pack(files)
    if how == "no_signature":
        del files["/.signatures.json"]
        return pack(files)
    if how == "other_key_same_kid":
        return built.by_other_key
    if how == "unknown_kid":
        return built.by_unknown_kid
    if how == "wrong_scope":
        return resign(raw, built.private, lambda p: p.update(scope="read"))
    if how == "not_gzip":
        return b"not a tarball"
    raise AssertionError(how)

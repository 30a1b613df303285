"""The outbox relayed to a real NATS JetStream (nats-server from Debian's packages)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from control_plane.config import Settings
from tests.fixtures.events import events_until
from tests.fixtures.factories import create_agent, create_domain
from tests.fixtures.servers import free_port


def _nats_bin() -> str | None:
    found = os.environ.get("AGENTCTL_NATS_SERVER_BIN") or shutil.which("nats-server")
    if found is None and Path("/usr/sbin/nats-server").exists():
        found = "/usr/sbin/nats-server"
    return found


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    binary = _nats_bin()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and no nats-server: run scripts/install-nats.sh")
        pytest.skip("no nats-server (scripts/install-nats.sh installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "nats-server did not start"
                time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def settings(settings: Settings, nats_url: str) -> Settings:
    return settings.model_copy(update={"nats_url": nats_url, "events_poll_seconds": 0.05})


async def test_every_event_once_with_its_id(
    client: httpx.AsyncClient, admin: dict[str, str], nats_url: str
) -> None:
    await create_domain(client, admin, "payments")
    for _ in range(3):
        await create_agent(client, admin, "payments")
    events = await events_until(
        client, admin, lambda es: sum(e["type"] == "agent.registered.v1" for e in es) == 3
    )
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + 10
        while True:
            try:
                info = await js.stream_info("AGENTCTL_EVENTS")
                if info.state.messages >= len(events):
                    break
            except nats.js.errors.NotFoundError:
                pass
            assert time.monotonic() < deadline, "events were not relayed"
            await asyncio.sleep(0.05)
        # The relay keeps the events' order; later events (the audit checkpointer's own
        # audit.checkpoint.v1) may follow the ones listed above, so the listed ones are a prefix.
        relayed = [await js.get_msg("AGENTCTL_EVENTS", seq=n) for n in range(1, len(events) + 1)]
        assert [m.headers["Nats-Msg-Id"] for m in relayed] == [e["id"] for e in events]
        assert [m.subject for m in relayed] == [f"agentctl.events.{e['type']}" for e in events]
        # A repeat of an event (a relay restarting, a second replica) is dropped by JetStream.
        ack = await js.publish(
            relayed[0].subject, relayed[0].data, headers={"Nats-Msg-Id": events[0]["id"]}
        )
        assert ack.duplicate is True
    finally:
        await nc.close()

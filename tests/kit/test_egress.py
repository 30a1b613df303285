"""The pinned client connects only where its one resolution said, and TLS checks the URL's name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from control_plane.kit import egress
from tests.fixtures.egress import Answers, Receiver
from tests.fixtures.tls import contexts


@pytest.fixture
def answers() -> Answers:
    return Answers()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def test_loopback_answer_refused_before_connecting(
    answers: Answers, receiver: Receiver
) -> None:
    answers.answers["hooks.rebind.test"] = ["127.0.0.1"]
    async with egress.pinned_client(allow_private=False, timeout=5, resolver=answers) as client:
        for url in (
            f"http://hooks.rebind.test:{receiver.port}/hook",
            f"http://127.0.0.1:{receiver.port}/hook",
            f"http://[::ffff:127.0.0.1]:{receiver.port}/hook",
        ):
            with pytest.raises(egress.EgressRefused, match="loopback, link-local, private"):
                await client.post(url, content=b"{}")
        with pytest.raises(egress.EgressRefused, match="does not resolve"):
            await client.post("http://nowhere.rebind.test/hook", content=b"{}")
    assert receiver.requests == []
    # One resolution per connection, by the pinned backend: nothing else looked the name up.
    assert answers.asked == [
        "hooks.rebind.test",
        "127.0.0.1",
        "::ffff:127.0.0.1",
        "nowhere.rebind.test",
    ]


async def test_allow_private_connects_to_the_answer(answers: Answers, receiver: Receiver) -> None:
    answers.answers["hooks.rebind.test"] = ["127.0.0.1"]
    async with egress.pinned_client(allow_private=True, timeout=5, resolver=answers) as client:
        r = await client.post(f"http://hooks.rebind.test:{receiver.port}/hook", content=b"{}")
    assert r.status_code == 204
    # The request went to the address resolved, under the URL's own name.
    assert [(host, body) for host, _, body in receiver.requests] == [
        (f"hooks.rebind.test:{receiver.port}", b"{}")
    ]


async def test_tls_verifies_the_url_name_not_the_address(answers: Answers, tmp_path: Path) -> None:
    server, trust = contexts(tmp_path, "hooks.pinned.test")
    receiver = Receiver(tls=server)
    try:
        answers.answers["hooks.pinned.test"] = ["127.0.0.1"]
        answers.answers["other.pinned.test"] = ["127.0.0.1"]
        async with egress.pinned_client(
            allow_private=True, timeout=5, resolver=answers, verify=trust
        ) as client:
            r = await client.get(f"https://hooks.pinned.test:{receiver.port}/")
            assert r.status_code == 204
            # Same address, a name the certificate does not carry: refused by TLS.
            with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
                await client.get(f"https://other.pinned.test:{receiver.port}/")
        assert receiver.sni[0] == "hooks.pinned.test"
        assert len(receiver.requests) == 1
    finally:
        receiver.close()


@pytest.mark.parametrize(
    ("addresses", "refused"),
    [
        (["93.184.216.34"], False),
        (["2606:2800:220:1:248:1893:25c8:1946"], False),
        (["93.184.216.34", "127.0.0.1"], True),  # every address must pass, not one
        (["169.254.169.254"], True),
        (["10.0.0.7"], True),
        (["fe80::1%eth0"], True),
        (["::ffff:10.0.0.1"], True),
        (["2002:7f00:1::"], True),  # 6to4 carrying 127.0.0.1
        (["2002:a9fe:a9fe::1"], True),  # 6to4 carrying 169.254.169.254
        (["2002:5db8:d822::1"], False),  # 6to4 carrying 93.184.216.34
        (["64:ff9b::7f00:1"], True),  # NAT64 carrying 127.0.0.1
        (["64:ff9b::a00:7"], True),  # NAT64 carrying 10.0.0.7
        (["224.0.0.1"], True),
        (["240.0.0.1"], True),
        ([], True),
        (["not-an-address"], True),
    ],
)
async def test_vetting(answers: Answers, addresses: list[str], refused: bool) -> None:
    answers.answers["h.test"] = addresses
    if refused:
        with pytest.raises(egress.Refused):
            await egress.vetted_addresses("h.test", 443, allow_private=False, resolver=answers)
    else:
        got = await egress.vetted_addresses("h.test", 443, allow_private=False, resolver=answers)
        assert got == addresses

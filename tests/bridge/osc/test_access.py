"""Who may steer: --osc-allow on real loopback sockets (127.0.0.2 plays the stranger), tokens.

Linux routes all of 127.0.0.0/8 to the loopback interface, so a client socket bound to
127.0.0.2 reaches a server on 127.0.0.1 with a different source address.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg
from websockets.asyncio.client import connect

from bridge.osc.access import host_allowed, parse_networks, token_matches
from bridge.osc.oscquery import OscQueryServer
from bridge.osc.server import OscServer
from engine.controls import ControlStore
from engine.errors import ConfigError
from tests.bridge.osc.helpers import wait_for

STRANGER = "127.0.0.2"


@pytest.fixture
def guarded(store: ControlStore) -> Iterator[OscServer]:
    with OscServer(store, port=0, tcp_port=0, allow=parse_networks(["127.0.0.1/32"])) as running:
        yield running


def udp_from(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(2.0)
    return sock


def test_parse_networks_accepts_hosts_and_ranges_and_names_a_bad_one() -> None:
    networks = parse_networks(["192.168.1.0/24", "10.0.0.5", "::1", " 127.0.0.0/8 "])
    assert [str(n) for n in networks] == ["192.168.1.0/24", "10.0.0.5/32", "::1/128", "127.0.0.0/8"]
    assert host_allowed("192.168.1.77", networks)
    assert not host_allowed("192.168.2.1", networks)
    assert host_allowed("::ffff:10.0.0.5", networks)  # a v4-mapped sender
    assert not host_allowed("not an ip", networks)
    assert host_allowed("203.0.113.9", ())  # no list: open
    with pytest.raises(ConfigError, match=re.escape("'192.168.1.300/24'")):
        parse_networks(["192.168.1.300/24"])


def test_tokens_compare_exactly() -> None:
    assert token_matches(None, None)
    assert token_matches(None, "anything")
    assert token_matches("s3cret", "s3cret")
    assert not token_matches("s3cret", None)
    assert not token_matches("s3cret", "s3cre")


def test_udp_from_outside_the_allow_list_is_dropped_and_counted(
    store: ControlStore, guarded: OscServer
) -> None:
    stranger, friend = udp_from(STRANGER), udp_from("127.0.0.1")
    with stranger, friend:
        stranger.sendto(build_msg("/hamba/seed", [1]).dgram, ("127.0.0.1", guarded.port))
        stranger.sendto(build_msg("/hamba/blend", [9.0]).dgram, ("127.0.0.1", guarded.port))
        friend.sendto(build_msg("/hamba/seed", [2]).dgram, ("127.0.0.1", guarded.port))
        wait_for(lambda: store.values.seed == 2)
        friend.sendto(build_msg("/hamba/blend", [9.0]).dgram, ("127.0.0.1", guarded.port))
        reply = OscMessage(friend.recv(4096))  # the friend is answered
        assert reply.address == "/hamba/error"
        stranger.settimeout(0.3)
        with pytest.raises(TimeoutError):  # the stranger is not: nothing to learn from us
            stranger.recv(4096)
    assert guarded.stats.refused == 2
    assert guarded.stats.applied == 1
    assert guarded.stats.rejected == 1


def test_tcp_from_outside_the_allow_list_is_dropped(
    store: ControlStore, guarded: OscServer
) -> None:
    from pythonosc import slip

    assert guarded.tcp_port is not None
    with socket.create_connection(
        ("127.0.0.1", guarded.tcp_port), source_address=(STRANGER, 0)
    ) as sock:
        sock.sendall(slip.encode(build_msg("/hamba/seed", [77]).dgram))
        wait_for(lambda: guarded.stats.refused == 1)
    assert store.values.seed == 42


def test_websocket_writes_from_outside_the_allow_list_are_refused(
    store: ControlStore, guarded: OscServer
) -> None:
    async def scenario(port: int) -> OscMessage:
        async with connect(f"ws://127.0.0.1:{port}/", proxy=None, local_addr=(STRANGER, 0)) as ws:
            await ws.send(build_msg("/hamba/seed", [5]).dgram)
            data = await asyncio.wait_for(ws.recv(), 5)
            assert isinstance(data, bytes)
            return OscMessage(data)

    with OscQueryServer(store, osc_port=guarded.port, osc=guarded, advertise=False) as oscquery:
        reply = asyncio.run(scenario(oscquery.http_port))
    assert reply.address == "/hamba/error"
    assert "may not steer" in reply.params[1]
    assert store.values.seed == 42
    assert guarded.stats.refused == 1

"""Real OSC servers on loopback (port 0) and python-osc clients that read the replies."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import closing

import pytest
from pythonosc.udp_client import SimpleUDPClient

from bridge.osc.server import OscServer
from engine.controls import ControlStore


@pytest.fixture
def store() -> ControlStore:
    return ControlStore()


@pytest.fixture
def server(store: ControlStore) -> Iterator[OscServer]:
    with OscServer(store, port=0, tcp_port=0) as running:
        yield running


@pytest.fixture
def client(server: OscServer) -> Iterator[SimpleUDPClient]:
    with closing(SimpleUDPClient("127.0.0.1", server.port)) as udp:
        yield udp


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A UDP socket on loopback that feedback is sent to (5 s receive timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        yield sock

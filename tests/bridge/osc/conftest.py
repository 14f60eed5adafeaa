"""Real OSC servers on loopback (port 0) and python-osc clients that read the replies."""

from __future__ import annotations

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

"""The OSCQuery WebSocket over real loopback sockets, driven by the `websockets` package.

LISTEN/IGNORE follow the OSCQuery proposal; OSC binary sent over the socket goes through the same
validated path as UDP; garbage never kills the server; abandoned sockets leave nothing behind.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg
from pythonosc.udp_client import SimpleUDPClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bridge.osc.feedback import FeedbackSender
from bridge.osc.oscquery import OscQueryServer
from bridge.osc.server import OscServer
from engine.controls import ControlStore
from tests.bridge.osc.helpers import music_state, open_fds, wait_for


@pytest.fixture
def oscquery(store: ControlStore, server: OscServer) -> Iterator[OscQueryServer]:
    feedback = FeedbackSender()
    with OscQueryServer(
        store, osc_port=server.port, advertise=False, osc=server, feedback=feedback
    ) as running:
        yield running
    feedback.close()


def ws_url(server: OscQueryServer, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.http_port}/{query}"


@asynccontextmanager
async def ws_client(server: OscQueryServer, **kwargs: Any) -> AsyncIterator[ClientConnection]:
    async with connect(ws_url(server), proxy=None, open_timeout=5, **kwargs) as ws:
        yield ws


async def command(ws: ClientConnection, verb: str, path: str) -> None:
    await ws.send(json.dumps({"COMMAND": verb, "DATA": path}))


async def next_message(ws: ClientConnection, timeout: float = 5.0) -> OscMessage:
    data = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(data, bytes), data
    return OscMessage(data)


async def settle(ws: ClientConnection, path: str = "/hamba/seed") -> None:
    """Wait until the server has handled every command sent so far (it handles them in order)."""
    await command(ws, "LISTEN", path)
    await ws.send(build_msg("/hamba/__probe__", []).dgram)
    message = await next_message(ws)
    assert message.address == "/hamba/error"
    assert message.params[0] == "/hamba/__probe__"


def test_listen_streams_every_change_once_and_ignore_stops_it(
    oscquery: OscQueryServer, client: SimpleUDPClient
) -> None:
    async def scenario() -> None:
        async with ws_client(oscquery) as ws:
            await command(ws, "LISTEN", "/hamba/blend")
            await settle(ws)
            values = [round(0.01 * i, 2) for i in range(1, 41)]
            for value in values:
                client.send_message("/hamba/blend", value)
            client.send_message("/hamba/blend", values[-1])  # no change: nothing is sent
            client.send_message("/hamba/seed", 7)  # the marker that all came through
            received = []
            while True:
                message = await next_message(ws)
                if message.address == "/hamba/seed":
                    break
                received.append(message)
            assert [m.address for m in received] == ["/hamba/blend"] * len(values)
            assert [m.params[0] for m in received] == pytest.approx(values)

            await command(ws, "IGNORE", "/hamba/blend")
            await settle(ws)
            client.send_message("/hamba/blend", 0.9)
            client.send_message("/hamba/seed", 8)
            message = await next_message(ws)
            assert (message.address, message.params) == ("/hamba/seed", [8])

    asyncio.run(scenario())


def test_osc_over_the_socket_uses_the_validated_path(
    store: ControlStore, server: OscServer, oscquery: OscQueryServer
) -> None:
    async def scenario() -> None:
        async with ws_client(oscquery) as ws:
            await ws.send(build_msg("/hamba/blend", [0.75]).dgram)
            await ws.send(build_msg("/hamba/prompt/chroma", [3, "brass in fog"]).dgram)
            await ws.send(build_msg("/hamba/blend", [7.5]).dgram)  # out of range
            error = await next_message(ws)
            assert error.address == "/hamba/error"
            assert error.params[0] == "/hamba/blend"
            assert "maximum" in error.params[1]
            await ws.send(build_msg("/hamba/preset", ["quality"]).dgram)
            replies = [await next_message(ws) for _ in range(4)]
            assert {m.address for m in replies} == {
                "/hamba/preset",
                "/hamba/blend",
                "/hamba/similarity",
                "/hamba/coherence",
            }

    asyncio.run(scenario())
    assert store.values.preset == "quality"
    assert store.values.chroma_prompts[3] == "brass in fog"
    assert server.stats.rejected == 1
    assert server.stats.applied == 3


def test_garbage_is_dropped_and_the_connection_lives_on(
    store: ControlStore, server: OscServer, oscquery: OscQueryServer
) -> None:
    garbage_text = [
        "not json",
        "{}",
        '{"COMMAND": "LISTEN"}',
        '{"COMMAND": "LISTEN", "DATA": 5}',
        '{"COMMAND": "FLY", "DATA": "/hamba/blend"}',
        '{"COMMAND": "LISTEN", "DATA": "/hamba/nowhere"}',
        '{"COMMAND": "LISTEN", "DATA": "/hamba/prompt/chroma"}',  # write-only
        "[1, 2, 3]",
        "\x00\x01",
    ]
    garbage_binary = [b"", b"\x00" * 7, b"#bundle\x00garbage", os.urandom(64), b"\xc0" * 300]

    async def scenario() -> None:
        async with ws_client(oscquery) as ws:
            for text in garbage_text:
                await ws.send(text)
            for data in garbage_binary:
                await ws.send(data)
            await command(ws, "LISTEN", "/hamba/blend")
            await ws.send(build_msg("/hamba/blend", [0.5]).dgram)
            message = await next_message(ws)
            assert (message.address, message.params) == ("/hamba/blend", [0.5])

    asyncio.run(scenario())
    assert oscquery.ws_stats.dropped_commands == len(garbage_text)
    assert server.stats.malformed >= 3
    assert oscquery.running
    assert store.values.blend == 0.5


def test_meters_stream_the_engines_outgoing_values(oscquery: OscQueryServer) -> None:
    assert oscquery.feedback is not None
    feedback = oscquery.feedback

    async def scenario() -> None:
        async with ws_client(oscquery) as ws:
            await command(ws, "LISTEN", "/hamba/audio/energy")
            await command(ws, "LISTEN", "/hamba/status/drops")
            await settle(ws)
            state = music_state(3, beat=False, energy=0.8125)
            await asyncio.to_thread(feedback.send_frame, state, fps=30.0, frame=3, drops=5)
            got: dict[str, list[Any]] = {}
            while len(got) < 2:
                message = await next_message(ws)
                got[message.address] = message.params
            assert got == {"/hamba/audio/energy": [0.8125], "/hamba/status/drops": [5]}

    asyncio.run(scenario())


def test_a_token_guards_the_socket(store: ControlStore) -> None:
    async def scenario(server: OscQueryServer) -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(server), proxy=None):
                pass
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            async with connect(ws_url(server, "?token=wrong"), proxy=None):
                pass
        async with connect(ws_url(server, "?token=s3cret"), proxy=None) as ws:
            await ws.send(build_msg("/hamba/seed", [11]).dgram)
        async with connect(
            ws_url(server), proxy=None, additional_headers={"Authorization": "Bearer s3cret"}
        ) as ws:
            await ws.send(build_msg("/hamba/seed", [12]).dgram)
            await settle(ws)

    with OscQueryServer(store, osc_port=9000, advertise=False, token="s3cret") as server:
        asyncio.run(scenario(server))
    assert store.values.seed == 12


def test_a_page_from_another_site_may_not_open_the_socket(oscquery: OscQueryServer) -> None:
    async def scenario() -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(oscquery), proxy=None, origin="http://evil.example"):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
        same = f"http://127.0.0.1:{oscquery.http_port}"
        async with connect(ws_url(oscquery), proxy=None, origin=same) as ws:  # type: ignore[arg-type]
            await settle(ws)

    asyncio.run(scenario())


def test_stop_closes_open_sockets_as_going_away(store: ControlStore) -> None:
    server = OscQueryServer(store, osc_port=9000, advertise=False)
    server.start()

    async def scenario() -> list[int | None]:
        clients = [await connect(ws_url(server), proxy=None) for _ in range(10)]
        for ws in clients:
            await command(ws, "LISTEN", "/hamba/blend")
        await asyncio.to_thread(server.stop)
        codes = []
        for ws in clients:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            codes.append(ws.close_code)
        return codes

    assert asyncio.run(scenario()) == [1001] * 10
    assert not any(t.name == "hamba-oscquery" for t in threading.enumerate())


def test_abandoned_sockets_leave_no_thread_fd_or_memory_behind(oscquery: OscQueryServer) -> None:
    """200 clients connect, LISTEN, and vanish without a closing handshake (measured).

    Memory is Python's own heap as tracemalloc counts it (RSS moves with the allocator's mood).
    """

    async def open_and_abandon(count: int) -> None:
        clients = [await connect(ws_url(oscquery), proxy=None) for _ in range(count)]
        for ws in clients:
            await command(ws, "LISTEN", "/hamba/blend")
            await command(ws, "LISTEN", "/hamba/audio/energy")
        await settle(clients[-1])
        for ws in clients:
            ws.transport.abort()  # gone: no close frame, no FIN handshake

    asyncio.run(open_and_abandon(20))  # warm up allocator and caches
    wait_for(lambda: oscquery.websocket_clients == 0)
    gc.collect()
    threads, fds = threading.active_count(), open_fds()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]

        def heap_growth() -> int:
            gc.collect()
            return int(tracemalloc.get_traced_memory()[0] - before)

        asyncio.run(open_and_abandon(200))
        wait_for(lambda: oscquery.websocket_clients == 0, timeout=20)
        wait_for(lambda: open_fds() <= fds, timeout=10)
        # closed connections finish their handlers within a moment; a leak never settles
        limit = 512 * 1024  # 200 leaked connections (buffers, tasks) would be megabytes
        wait_for(lambda: heap_growth() < limit, timeout=10)
        grown = heap_growth()
    finally:
        tracemalloc.stop()
    print(
        f"200 abandoned sockets: threads {threading.active_count() - threads:+d}, "
        f"fds {open_fds() - fds:+d}, python heap {grown / 1024:+.0f} KiB"
    )
    assert threading.active_count() == threads
    assert open_fds() == fds
    assert oscquery.ws_stats.connections == 220

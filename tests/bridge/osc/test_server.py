"""The OSC server over real UDP and TCP on loopback, driven by python-osc's own clients."""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg
from pythonosc.tcp_client import SimpleTCPClient
from pythonosc.udp_client import SimpleUDPClient

from bridge.osc.oscquery import OscQueryServer
from bridge.osc.server import OscServer, quiet_bundle_element_warnings
from bridge.osc.tcp import MAX_PACKET
from engine.controls import ControlStore, preset_controls
from engine.errors import ControlError
from osc_schema.schema import ERROR, incoming, values_of
from tests.bridge.osc.helpers import (
    RawPacket,
    barrier,
    example_args,
    http_get,
    receive,
    same_state,
    wait_for,
)

CONTROL_ADDRESSES = [e for e in incoming() if e.control is not None]


@pytest.fixture
def oscquery(store: ControlStore, server: OscServer) -> Iterator[OscQueryServer]:
    with OscQueryServer(store, osc_port=server.port, advertise=False) as running:
        yield running


@pytest.mark.parametrize("entry", CONTROL_ADDRESSES, ids=lambda e: e.address)
def test_every_control_address_round_trips_to_oscquery(
    entry: Any, store: ControlStore, client: SimpleUDPClient, oscquery: OscQueryServer
) -> None:
    current = values_of(store.values).get(entry.address)
    args = example_args(entry, current)
    client.send_message(entry.address, args)
    replies = barrier(client)
    # a valid message gets no reply; a preset reports what it set (tested below)
    assert [m.address for m in replies if m.address == ERROR] == []
    assert bool(replies) == (entry.address == "/hamba/preset")
    # a write-only (index, value) address shows up at the per-item address
    readback, expected = (
        (entry.address, args) if entry.readable else (f"{entry.address}/{args[0]}", args[1:])
    )
    assert values_of(store.values)[readback] == tuple(expected)
    status, body = http_get(f"http://127.0.0.1:{oscquery.http_port}{readback}?VALUE")
    assert (status, body) == (200, {"VALUE": expected})


def test_ints_for_floats_and_numbers_for_booleans(
    store: ControlStore, client: SimpleUDPClient
) -> None:
    client.send_message("/hamba/blend", 1)  # i for an f
    client.send_message("/hamba/seed", 7.0)  # a whole f for an i
    client.send_message("/hamba/pause", 1.0)  # a button's 1.0 for a boolean
    client.send_message("/hamba/coherence", 0)
    assert barrier(client) == []
    values = store.values
    assert (values.blend, values.seed, values.pause, values.coherence) == (1.0, 7, True, False)
    assert isinstance(values.seed, int)


def test_float32_values_read_back_as_sent(store: ControlStore, client: SimpleUDPClient) -> None:
    client.send_message("/hamba/strength", 0.3)  # 0.30000001192... as a float32
    barrier(client)
    assert store.values.strength == 0.3


BAD_MESSAGES = [
    ("/hamba/blend", ["high"], "expects a float, got string 'high'"),
    ("/hamba/blend", [0.1, 0.2], "expects 1 argument (f), got 2"),
    ("/hamba/blend", [], "expects 1 argument (f), got 0"),
    ("/hamba/blend", [1.5], "1.5 is above the maximum 1"),
    ("/hamba/reactivity", [-0.5], "-0.5 is below the minimum 0"),
    ("/hamba/seed", [2.5], "expects an integer, got float 2.5"),
    ("/hamba/seed", [-1], "-1 is below the minimum 0"),
    ("/hamba/pause", [2], "expects T/F, got integer 2"),
    ("/hamba/pause", ["yes"], "expects T/F, got string 'yes'"),
    ("/hamba/prompt", [42], "expects a string, got integer 42"),
    ("/hamba/prompt", [b"blob"], "unsupported type tag 'b'"),
    ("/hamba/seed", [[1, 2]], "unsupported type tag '[', ']'"),
    ("/hamba/prompt", ["x" * 1001], "is 1001 characters long, at most 1000"),
    ("/hamba/preset", ["turbo"], "'turbo' is not one of fast, balanced, quality"),
    ("/hamba/prompt/chroma", [12, "b"], "index: 12 is above the maximum 11"),
    ("/hamba/prompt/chroma", ["b", 1], "index: expects an integer, got string 'b'"),
    ("/hamba/prompt/chroma/3", [3], "expects a string, got integer 3"),
    ("/hamba/subscribe", [70000], "70000 is above the maximum 65535"),
    ("/hamba/blends", [0.5], "unknown address"),
    ("/hamba", [0.5], "unknown address"),
    ("/hamba/audio/energy", [0.5], "is sent by the engine, not received"),
]


@pytest.mark.parametrize(("address", "args", "reason"), BAD_MESSAGES)
def test_bad_message_leaves_state_and_answers_error(
    address: str,
    args: list[Any],
    reason: str,
    store: ControlStore,
    server: OscServer,
    client: SimpleUDPClient,
) -> None:
    before = store.snapshot()
    client.send_message(address, args)
    (reply,) = receive(client, 1)
    assert reply.address == ERROR
    assert reply.params == [address, reason]
    assert same_state(before, store)
    assert server.feedback.targets == ()
    assert server.stats.rejected == 1


def test_rejections_are_logged_as_warnings(
    client: SimpleUDPClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bridge.osc.server"):
        client.send_message("/hamba/blend", "loud")
        barrier(client)
    assert any("/hamba/blend: expects a float" in r.getMessage() for r in caplog.records)


def test_an_error_is_never_answered_with_an_error(
    store: ControlStore, client: SimpleUDPClient
) -> None:
    before = store.snapshot()
    client.send_message(ERROR, ["/x", "from another engine"])
    assert barrier(client) == []
    assert same_state(before, store)


def test_preset_replies_with_the_values_it_set(
    store: ControlStore, client: SimpleUDPClient
) -> None:
    client.send_message("/hamba/preset", "quality")
    replies = {m.address: m.params for m in receive(client, len(preset_controls("quality")))}
    expected = preset_controls("quality")
    assert replies.pop("/hamba/preset") == ["quality"]
    assert replies == {
        f"/hamba/{name}": [pytest.approx(value, abs=1e-6)]
        for name, value in expected.items()
        if name != "preset"
    }
    assert store.values.preset == "quality"
    assert store.values.blend == expected["blend"]


def test_bad_element_does_not_drop_the_rest_of_a_bundle(
    store: ControlStore, client: SimpleUDPClient
) -> None:
    inner = OscBundleBuilder(IMMEDIATELY)
    inner.add_content(build_msg("/hamba/seed", [99]))
    inner.add_content(build_msg("/hamba/nowhere", [1]))
    outer = OscBundleBuilder(IMMEDIATELY)
    outer.add_content(build_msg("/hamba/blend", ["wrong"]))
    outer.add_content(build_msg("/hamba/strength", [0.75]))
    outer.add_content(inner.build())
    client.send(outer.build())
    errors = barrier(client)
    assert sorted(m.params[0] for m in errors) == ["/hamba/blend", "/hamba/nowhere"]
    assert (store.values.strength, store.values.seed, store.values.blend) == (0.75, 99, 0.3)


def test_a_failing_handler_does_not_drop_the_rest_of_a_bundle(
    store: ControlStore, client: SimpleUDPClient
) -> None:
    def fragile(values: Any, changed: frozenset[str]) -> None:
        if "seed" in changed:
            raise RuntimeError("listener broke")

    store.subscribe(fragile)  # a real store listener that raises: a bug outside the server
    bundle = OscBundleBuilder(IMMEDIATELY)
    bundle.add_content(build_msg("/hamba/seed", [13]))
    bundle.add_content(build_msg("/hamba/strength", [0.8]))
    client.send(bundle.build())
    (error,) = barrier(client)
    assert error.params == ["/hamba/seed", "internal error: listener broke"]
    assert store.values.strength == 0.8


def test_future_bundle_applies_without_waiting(
    store: ControlStore, client: SimpleUDPClient
) -> None:
    bundle = OscBundleBuilder(int(time.time()) + 3600)  # an hour from now
    bundle.add_content(build_msg("/hamba/seed", [5]))
    client.send(bundle.build())
    barrier(client)
    assert store.values.seed == 5


@pytest.mark.parametrize(
    "datagram",
    [b"", b"garbage", b"/hamba/blend", b"#bundle", b"#bundle\x00" + bytes(8) + b"\x00\x00\x01\x00"],
)
def test_malformed_datagram_is_dropped_quietly(
    datagram: bytes,
    store: ControlStore,
    server: OscServer,
    client: SimpleUDPClient,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = store.snapshot()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(datagram, ("127.0.0.1", server.port))
    client.send_message("/hamba/seed", 11)
    assert barrier(client) == []
    assert store.values.seed == 11  # still serving, in order
    assert store.snapshot().values.blend == before.values.blend
    assert "Traceback" not in capsys.readouterr().err


def test_unknown_bundle_elements_warn_once_and_are_counted(
    store: ControlStore, client: SimpleUDPClient, caplog: pytest.LogCaptureFixture
) -> None:
    # python-osc logs "Could not identify content type" on the root logger for each such element
    junk = b"junk\x00\x00\x00\x00"  # neither "/address" nor "#bundle"
    seed = build_msg("/hamba/seed", [21]).dgram
    datagram = (
        b"#bundle\x00"
        + bytes(8)
        + struct.pack(">i", len(junk))
        + junk
        + struct.pack(">i", len(seed))
        + seed
    )
    counter = quiet_bundle_element_warnings()
    before = counter.matched
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            client.send(RawPacket(datagram))
        barrier(client)
    warned = [r for r in caplog.records if "Could not identify content type" in r.getMessage()]
    assert counter.matched - before == 50
    assert len(warned) <= 1  # one per 10 s window (none if an earlier test used this window)
    assert store.values.seed == 21  # the rest of each bundle still applied


@pytest.mark.parametrize("cut", [1, 3, 4])
def test_truncated_float_is_rejected_not_zero_padded(
    cut: int, store: ControlStore, client: SimpleUDPClient
) -> None:
    before = store.snapshot()
    client.send(RawPacket(build_msg("/hamba/blend", [0.75]).dgram[:-cut]))
    (reply,) = receive(client, 1)
    assert reply.address == ERROR
    assert reply.params[0] == "/hamba/blend"
    assert reply.params[1].startswith("truncated")
    assert same_state(before, store)


@pytest.mark.parametrize("mode", ["1.1", "1.0"])  # SLIP, length-prefixed
def test_tcp_round_trip_with_replies(mode: str, store: ControlStore, server: OscServer) -> None:
    assert server.tcp_port
    with SimpleTCPClient("127.0.0.1", server.tcp_port, mode=mode) as tcp:
        tcp.send_message("/hamba/prompt", "a cathedral of glass")
        tcp.send_message("/hamba/blend", 7.0)
        (packet,) = tcp.receive(timeout=5)
    error = OscMessage(packet)
    assert error.address == ERROR
    assert error.params == ["/hamba/blend", "7.0 is above the maximum 1"]
    assert store.values.prompt == "a cathedral of glass"


def test_tcp_length_prefixed_stream_in_pieces(store: ControlStore, server: OscServer) -> None:
    assert server.tcp_port
    first, second = (build_msg("/hamba/seed", [v]).dgram for v in (5, 6))
    stream = b"".join(struct.pack(">I", len(d)) + d for d in (first, second))
    with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5) as sock:
        for i in range(0, len(stream), 7):  # packets split across reads
            sock.sendall(stream[i : i + 7])
        wait_for(lambda: store.values.seed == 6)


def test_tcp_stream_survives_bad_slip_frames(store: ControlStore, server: OscServer) -> None:
    assert server.tcp_port
    with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5) as sock:
        good = build_msg("/hamba/seed", [123]).dgram
        sock.sendall(b"\xc0\xdb\x01\xc0" + b"\xc0not osc\xc0" + b"\xc0" + good + b"\xc0")
        wait_for(lambda: store.values.seed == 123)
    assert server.stats.malformed == 2


def test_broken_tcp_streams_are_logged_rate_limited(
    server: OscServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert server.tcp_port is not None
    with caplog.at_level(logging.WARNING, logger="bridge.osc.tcp"):
        for _ in range(20):  # a client reconnecting in a loop with a broken stream
            with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=5) as conn:
                conn.sendall(struct.pack(">I", MAX_PACKET + 1))  # a length prefix too large
                assert conn.recv(1) == b""  # the server closes the connection
    closing = [r for r in caplog.records if "announced; closing" in r.getMessage()]
    assert 1 <= len(closing) < 20  # five per second at most (20 connections take well under 4 s)


def test_port_in_use_is_a_control_error_naming_the_port(store: ControlStore) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(ControlError, match=f"OSC UDP port {port} on 127.0.0.1"):
            OscServer(store, port=port).start()


def test_tcp_port_in_use_releases_the_udp_port(store: ControlStore) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = OscServer(store, port=0, tcp_port=port)
        with pytest.raises(ControlError, match=f"OSC TCP port {port}"):
            server.start()
    server.stop()  # nothing was started: stop is harmless


def test_stop_is_idempotent_and_frees_the_port(store: ControlStore) -> None:
    server = OscServer(store, port=0)
    server.start()
    port = server.port
    server.stop()
    server.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))


def test_listeners_see_changes_on_the_osc_thread(
    store: ControlStore, client: SimpleUDPClient
) -> None:
    seen: list[frozenset[str]] = []
    store.subscribe(lambda _values, changed: seen.append(changed))
    client.send_message("/hamba/reactivity", 1.5)
    barrier(client)
    assert seen == [frozenset({"reactivity"})]

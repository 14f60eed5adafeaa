"""What capabilities plug into the OSC services: feedback providers and address handlers."""

from __future__ import annotations

import logging
import socket
from contextlib import closing
from typing import Any

import pytest
from pythonosc.osc_packet import OscPacket
from pythonosc.udp_client import SimpleUDPClient

from bridge.osc.feedback import FeedbackSender
from bridge.osc.server import OscServer
from engine.errors import ControlError
from osc_schema.schema import BEAT_SOURCE_STATUS, LINK_PEERS, LINK_TEMPO, MIDI_LEARN
from tests.bridge.osc.helpers import music_state, port_of, receive


def frame_messages(sock: socket.socket) -> dict[str, list[Any]]:
    got: dict[str, list[Any]] = {}
    sock.settimeout(0.5)
    try:
        while True:
            for timed in OscPacket(sock.recv(65536)).messages:
                got[timed.message.address] = list(timed.message.params)
    except TimeoutError:
        return got


def test_providers_add_their_addresses_to_every_frame(listener: socket.socket) -> None:
    sender = FeedbackSender([("127.0.0.1", port_of(listener))])
    sender.add_provider(lambda: {BEAT_SOURCE_STATUS: ("link",)})
    sender.add_provider(lambda: {LINK_PEERS: (2,), LINK_TEMPO: (128.0,)})
    try:
        sender.send_frame(music_state(0, beat=False), fps=20.0, frame=0)
        got = frame_messages(listener)
    finally:
        sender.close()
    assert got[BEAT_SOURCE_STATUS] == ["link"]
    assert got[LINK_PEERS] == [2]
    assert got[LINK_TEMPO] == [128.0]
    assert "/hamba/status/frame" in got
    assert sender.latest()[LINK_PEERS] == (2,)  # OSCQuery VALUE sees them too


def test_a_failing_provider_costs_its_messages_only(
    listener: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    sender = FeedbackSender([("127.0.0.1", port_of(listener))])

    def broken() -> dict[str, tuple[Any, ...]]:
        raise RuntimeError("link went away")

    sender.add_provider(broken)
    try:
        with caplog.at_level(logging.WARNING, logger="bridge.osc.feedback"):
            sender.send_frame(music_state(0, beat=False), fps=20.0, frame=0)
        got = frame_messages(listener)
    finally:
        sender.close()
    assert "/hamba/status/frame" in got
    assert "link went away" in caplog.text


def test_a_handler_gets_checked_arguments_and_the_sender() -> None:
    from engine.controls import ControlStore

    calls: list[tuple[tuple[Any, ...], tuple[str, int]]] = []

    def learn(values: tuple[Any, ...], sender: tuple[str, int]) -> list[Any]:
        if values[0] == "no":
            raise ControlError(f"{MIDI_LEARN}: refused")
        calls.append((values, sender))
        return [("/hamba/midi/learned", ("/hamba/blend", 1, 7))]

    with OscServer(ControlStore(), port=0) as server:
        server.add_handler(MIDI_LEARN, learn)
        with closing(SimpleUDPClient("127.0.0.1", server.port)) as client:
            client.send_message(MIDI_LEARN, "blend")
            (reply,) = receive(client, 1)
            assert reply.address == "/hamba/midi/learned"
            client.send_message(MIDI_LEARN, 5)  # not a string: refused before the handler
            client.send_message(MIDI_LEARN, "no")
            first, second = receive(client, 2)
    assert calls[0][0] == ("blend",)
    assert calls[0][1][0] == "127.0.0.1"
    assert len(calls) == 1
    assert first.address == "/hamba/error"
    assert "expects a string" in first.params[1]
    assert second.params == [MIDI_LEARN, "refused"]


def test_only_non_control_incoming_addresses_take_handlers() -> None:
    from engine.controls import ControlStore

    server = OscServer(ControlStore(), port=0)
    with pytest.raises(ValueError, match="not controls"):
        server.add_handler("/hamba/blend", lambda v, s: [])
    with pytest.raises(ValueError, match="not controls"):
        server.add_handler(LINK_TEMPO, lambda v, s: [])

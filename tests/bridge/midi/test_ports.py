"""MIDI ports: the real library's answer on this machine, and port handling on a stand-in.

What ran here: python-rtmidi itself, which on these machines (no ALSA sequencer) cannot list or
open a port, so "no MIDI system" is the clear error; the rest runs on the stand-in backend of
tests/bridge/midi/standin.py (opening by name, unplug and replug, beat notes).
"""

from __future__ import annotations

import logging
import sys
import time

import mido
import pytest

from bridge.midi.ports import (
    MIDI_INSTALL,
    BeatNotes,
    BeatNoteSettings,
    MidiError,
    MidiInputPort,
    find_port,
    load_mido,
    port_names,
)
from tests.bridge.midi.standin import Device, StandInBackend

APC = "APC40 mkII:APC40 mkII MIDI 1 20:0"
LCXL = "Launch Control XL:Launch Control XL MIDI 1 24:0"


def test_opening_an_absent_port_with_the_real_library_is_a_clear_error() -> None:
    """python-rtmidi for real: here there is no MIDI system; elsewhere the port is absent."""
    port = MidiInputPort("No Such Controller 9000", lambda _m: None)
    with pytest.raises(MidiError) as info:
        port.open()
    message = str(info.value)
    assert "no MIDI system available" in message or "'No Such Controller 9000' not found" in message
    assert not port.connected


def test_listing_with_the_real_library_names_the_problem_or_lists() -> None:
    outcome: list[str] | MidiError
    try:
        outcome = port_names("input")
    except MidiError as exc:
        outcome = exc
    if isinstance(outcome, MidiError):
        assert "no MIDI system available" in str(outcome)
    else:
        assert isinstance(outcome, list)


def test_ports_are_found_by_any_part_of_their_name() -> None:
    names = [APC, LCXL]
    assert find_port(APC, names, "input") == APC
    assert find_port("apc40", names, "input") == APC
    assert find_port("Launch Control", names, "input") == LCXL
    with pytest.raises(MidiError, match=r"'MIDI 1' matches several ports"):
        find_port("MIDI 1", names, "input")
    with pytest.raises(MidiError, match=r"'Twister' not found \(ports: 'APC40"):
        find_port("Twister", names, "input")
    with pytest.raises(MidiError, match=r"not found \(ports: none\)"):
        find_port("Twister", [], "output")


def test_messages_reach_the_entry_point_through_the_port_callback() -> None:
    device = Device(APC)
    got: list[mido.Message] = []
    port = MidiInputPort("APC40", got.append, backend=StandInBackend(device), recheck=60)
    port.open()
    try:
        device.play([0xB0, 21, 64])  # CC 21 = 64 on channel 1
        device.play([0xF8])  # clock
        device.play([0xB0, 21])  # truncated: dropped, as mido's rtmidi backend drops it
    finally:
        port.close()
    assert [m.type for m in got] == ["control_change", "clock"]
    assert got[0].control == 21
    assert got[0].value == 64


def test_an_unplugged_input_is_a_warning_and_comes_back(caplog: pytest.LogCaptureFixture) -> None:
    device = Device(APC)
    got: list[mido.Message] = []
    port = MidiInputPort("APC40", got.append, backend=StandInBackend(device), recheck=60)
    port.open()
    try:
        device.plugged = False
        with caplog.at_level(logging.WARNING, logger="bridge.midi.ports"):
            port.check()
        assert not port.connected
        assert "disappeared" in caplog.text
        assert "the show goes on" in caplog.text
        port.check()  # still gone: quiet, no error
        device.plugged = True
        port.check()
        assert port.connected
        assert port.reconnects == 1
        device.play([0x90, 60, 100])
        assert [m.type for m in got] == ["note_on"]
    finally:
        port.close()


def test_the_watch_thread_notices_by_itself() -> None:
    device = Device(APC)
    port = MidiInputPort("APC40", lambda _m: None, backend=StandInBackend(device), recheck=0.02)
    port.open()
    try:
        device.plugged = False
        deadline = time.monotonic() + 2
        while port.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not port.connected
        device.plugged = True
        while not port.connected and time.monotonic() < deadline + 2:
            time.sleep(0.01)
        assert port.connected
    finally:
        port.close()


def test_beat_notes_go_out_on_time_and_survive_an_unplug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    device = Device(LCXL)
    notes = BeatNotes(
        "Launch Control XL",
        BeatNoteSettings(note=41, downbeat_note=42, channel=9, velocity=60, length=0.02),
        backend=StandInBackend(device),
        recheck=0.05,
    )
    notes.open()
    try:
        due = time.monotonic() + 0.1
        notes.on_beat(due, True)
        notes.on_beat(due + 0.1, False)
        time.sleep(0.35)
        sent = [(t, m) for t, m in device.sent]
        assert [(m.type, m.note, m.channel, m.velocity) for _, m in sent] == [
            ("note_on", 42, 8, 60),
            ("note_off", 42, 8, 0),
            ("note_on", 41, 8, 60),
            ("note_off", 41, 8, 0),
        ]
        assert sent[0][0] >= due
        assert sent[0][0] - due < 0.05  # not before its beat
        device.plugged = False
        with caplog.at_level(logging.WARNING, logger="bridge.midi.ports"):
            notes.on_beat(time.monotonic(), False)
            time.sleep(0.1)
        assert notes.failures == 1
        assert "the show goes on" in caplog.text
        device.plugged = True
        time.sleep(0.06)
        notes.on_beat(time.monotonic(), False)
        time.sleep(0.1)
        assert device.sent[-1][1].type == "note_off"
        assert notes.sent == 6
    finally:
        notes.close()


def test_a_missing_mido_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mido", None)
    with pytest.raises(MidiError) as info:
        load_mido()
    assert MIDI_INSTALL in str(info.value)

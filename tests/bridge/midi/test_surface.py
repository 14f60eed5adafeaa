"""MIDI learn over OSC (a real OSC server on loopback) and from `hamba midi learn`.

The MIDI side is the stand-in backend (tests/bridge/midi/standin.py): these machines have no
MIDI system. The OSC side, the daemon's learn handler and the CLI are the real ones.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pythonosc.osc_message_builder import build_msg
from pythonosc.osc_packet import OscPacket

from bridge.midi.mapping import midi_map_from_data
from bridge.midi.surface import MidiSurface, learn_unavailable
from bridge.osc.server import OscServer
from engine.controls import ControlStore
from osc_schema.schema import MIDI_LEARN
from tests.bridge.cli_process import REPO, cli_env, hamba_command, run_hamba
from tests.bridge.midi.standin import Device, StandInBackend

APC = "APC40 mkII:APC40 mkII MIDI 1 20:0"


class Rig:
    def __init__(self, with_midi: bool = True) -> None:
        self.store = ControlStore()
        self.device = Device(APC)
        self.surface: MidiSurface | None = None
        self.osc = OscServer(self.store, "127.0.0.1", 0)
        if with_midi:
            mapping = midi_map_from_data({"input": "APC40"}, source="test")
            self.surface = MidiSurface(self.store, mapping, backend=StandInBackend(self.device))
            self.surface.open()
            self.osc.add_handler(MIDI_LEARN, self.surface.osc_learn)
        else:
            self.osc.add_handler(MIDI_LEARN, learn_unavailable)
        self.osc.start()
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind(("127.0.0.1", 0))
        self.client.settimeout(2.0)

    def send(self, *args: Any) -> None:
        self.client.sendto(build_msg(MIDI_LEARN, list(args)).dgram, ("127.0.0.1", self.osc.port))

    def reply(self) -> tuple[str, list[Any]]:
        message = OscPacket(self.client.recv(65536)).messages[0].message
        return message.address, list(message.params)

    def close(self) -> None:
        self.client.close()
        self.osc.stop()
        if self.surface is not None:
            self.surface.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def wait_learning(rig: Rig) -> None:
    assert rig.surface is not None
    deadline = time.monotonic() + 5
    while rig.surface.control.learning is None:
        assert time.monotonic() < deadline, "the learn request never arrived"
        time.sleep(0.01)


def test_learn_over_osc_binds_and_answers(rig: Rig) -> None:
    rig.send("blend")
    wait_learning(rig)
    rig.device.play([0xB3, 21, 0])  # CC 21 on channel 4
    assert rig.reply() == ("/hamba/midi/learned", ["/hamba/blend", 4, 21])
    rig.device.play([0xB3, 21, 38])  # soft takeover: 38/127 = 0.299, meets blend's 0.3
    rig.device.play([0xB3, 21, 127])
    assert rig.store.values.blend == 1.0


def test_learn_of_an_unknown_control_is_an_osc_error(rig: Rig) -> None:
    rig.send("/hamba/blnd")
    address, (culprit, reason) = rig.reply()
    assert address == "/hamba/error"
    assert culprit == MIDI_LEARN
    assert "unknown control '/hamba/blnd'" in reason
    rig.send(3)  # the wrong type: the schema refuses it before the handler
    address, (culprit, reason) = rig.reply()
    assert culprit == MIDI_LEARN
    assert "expects a string" in reason


def test_learn_without_midi_says_so() -> None:
    rig = Rig(with_midi=False)
    try:
        rig.send("blend")
        address, (_, reason) = rig.reply()
        assert address == "/hamba/error"
        assert "MIDI is off" in reason
    finally:
        rig.close()


def test_the_cli_learns_on_a_running_daemon(rig: Rig) -> None:
    proc = subprocess.Popen(
        hamba_command(
            "midi", "learn", "strength", "--osc", f"127.0.0.1:{rig.osc.port}", "--timeout", "20"
        ),
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_learning(rig)
        rig.device.play([0xB0, 7, 100])
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.strip() == '[[midi.cc]]\ncc = 7\ncontrol = "/hamba/strength"\nchannel = 1'
    assert "move a knob or fader" in err


def test_the_cli_reports_a_refusal_and_a_timeout(rig: Rig) -> None:
    refused = run_hamba(
        ["midi", "learn", "nonsense", "--osc", f"127.0.0.1:{rig.osc.port}"], timeout=30
    )
    assert refused.returncode == 2
    assert "unknown control 'nonsense'" in refused.stderr
    assert "Traceback" not in refused.stderr
    quiet = run_hamba(
        ["midi", "learn", "blend", "--osc", f"127.0.0.1:{rig.osc.port}", "--timeout", "0.5"],
        timeout=30,
    )
    assert quiet.returncode == 2
    assert "no CC moved within 0.5 s" in quiet.stderr
    time.sleep(0.2)
    assert rig.surface is not None
    assert rig.surface.control.learning is None  # cancelled

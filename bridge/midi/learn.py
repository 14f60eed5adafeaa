"""`hamba midi learn CONTROL`: MIDI learn on a running daemon, from the command line.

The daemon owns the MIDI input (on Windows a port opens in one program at a time), so the
command asks it over OSC: it sends ``/hamba/midi/learn CONTROL`` from a socket of its own and
waits for ``/hamba/midi/learned`` (address, channel, cc), then prints the mapping lines to
keep. ``/hamba/error`` from the daemon (unknown control, MIDI off) is the command's error.
"""

from __future__ import annotations

import socket
import sys
import time

from pythonosc.osc_packet import OscPacket

from bridge.midi.control import binding_toml
from bridge.midi.mapping import CcBinding
from bridge.options import parse_host_port
from bridge.osc.wire import encode_reply
from engine.errors import ConfigError, ControlError
from osc_schema.schema import ERROR, MIDI_LEARN, MIDI_LEARNED


def learn_over_osc(control: str, daemon: str, *, timeout: float = 30.0) -> str:
    """Ask the daemon at ``HOST:PORT`` to learn ``control``; the ``[[midi.cc]]`` lines.

    ControlError when the daemon refuses (its reason) or no CC moved within ``timeout``;
    ConfigError for a malformed ``daemon``.
    """
    try:
        target = parse_host_port(daemon)
    except ConfigError:
        raise ConfigError(f"--osc {daemon!r} must look like HOST:PORT (port 1-65535)") from None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", 0))
        sock.sendto(encode_reply((MIDI_LEARN, (control,))), target)
        print(
            f"midi learn: move a knob or fader on the daemon's MIDI input for {control}",
            file=sys.stderr,
        )
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            for timed in _messages(data):
                address, params = timed
                if address == MIDI_LEARNED and len(params) == 3:
                    bound, channel, cc = params
                    # the daemon's values, validated as a mapping file's would be
                    binding = CcBinding.model_validate(
                        {"cc": cc, "control": bound, "channel": channel}
                    )
                    return binding_toml(binding)
                if address == ERROR and len(params) == 2 and params[0] == MIDI_LEARN:
                    raise ControlError(f"the daemon at {daemon} refused: {params[1]}")
        # nothing came: cancel, so a later knob move is not bound by surprise
        sock.sendto(encode_reply((MIDI_LEARN, ("",))), target)
    raise ControlError(f"no CC moved within {timeout:g} s (is a daemon on {daemon} with MIDI?)")


def _messages(data: bytes) -> list[tuple[str, list[object]]]:
    try:
        return [(m.message.address, list(m.message.params)) for m in OscPacket(data).messages]
    except Exception:  # noqa: BLE001 - not OSC (python-osc raises more than ParseError on garbage)
        return []

"""The MIDI surface of a running daemon: input port -> controls and clock, beat notes out, learn.

Built from a :class:`~bridge.midi.mapping.MidiMap`; :meth:`MidiSurface.open` opens the ports
(a missing port or MIDI system is a :class:`~bridge.midi.ports.MidiError` at start),
:meth:`MidiSurface.close` closes them. ``/hamba/midi/learn`` arrives through
:meth:`MidiSurface.osc_learn`; the binding made is sent back to the asker as
``/hamba/midi/learned`` (address, channel, cc).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Any

from bridge.midi.clock import MidiClock
from bridge.midi.control import MidiControl
from bridge.midi.mapping import CcBinding, MidiMap
from bridge.midi.ports import BeatNotes, BeatNoteSettings, MidiBackend, MidiInputPort, load_mido
from bridge.osc.wire import Reply, Sender, encode_reply
from engine.controls import ControlStore
from engine.errors import ControlError
from osc_schema.schema import MIDI_LEARN, MIDI_LEARNED

log = logging.getLogger(__name__)


class MidiSurface:
    """The MIDI input (mapping, learn, clock) and the beat-note output of one run."""

    def __init__(
        self,
        store: ControlStore,
        mapping: MidiMap,
        *,
        quantum: float = 4.0,
        backend: MidiBackend | None = None,
    ) -> None:
        if backend is None:
            backend = load_mido()  # a missing library fails here, at start
        self.mapping = mapping
        self.clock = MidiClock(quantum=quantum, auto=mapping.clock)
        self.control = MidiControl(store, mapping, clock=self.clock)
        self.input = (
            MidiInputPort(mapping.input, self.control.on_message, backend=backend)
            if mapping.input is not None
            else None
        )
        self.notes = (
            BeatNotes(
                mapping.output,
                BeatNoteSettings(
                    note=mapping.beat_note,
                    downbeat_note=mapping.downbeat_note,
                    channel=mapping.beat_channel,
                    velocity=mapping.beat_velocity,
                ),
                backend=backend,
            )
            if mapping.output is not None and mapping.beat_note is not None
            else None
        )
        self._reply = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._reply.setblocking(False)

    @property
    def description(self) -> str:
        parts = []
        if self.input is not None:
            parts.append(f"in {self.input.wanted!r} ({len(self.control.bindings)} CC bindings)")
        if self.notes is not None:
            parts.append(f"beat notes to {self.notes.wanted!r}")
        return "MIDI " + ", ".join(parts)

    def open(self) -> None:
        """Open the ports; MidiError naming a port that is absent (nothing stays open then)."""
        try:
            if self.input is not None:
                self.input.open()
            if self.notes is not None:
                self.notes.open()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close every port; safe to call twice."""
        if self.input is not None:
            self.input.close()
        if self.notes is not None:
            self.notes.close()
        self._reply.close()

    def osc_learn(self, values: Sequence[Any], sender: Sender) -> list[Reply]:
        """``/hamba/midi/learn <control>`` (arguments checked by the OSC server): learn now,
        answer ``/hamba/midi/learned`` to the sender once a CC moved."""
        (control,) = values
        if self.input is None:
            raise ControlError(f"{MIDI_LEARN}: the MIDI map names no input port")

        def answer(binding: CcBinding) -> None:
            channel = binding.channel or 1
            datagram = encode_reply((MIDI_LEARNED, (binding.control, channel, binding.cc)))
            try:
                self._reply.sendto(datagram, sender)
            except OSError as exc:
                log.warning("midi learn: cannot answer %s:%d: %s", *sender, exc)

        try:
            self.control.learn(str(control), answer)
        except ControlError as exc:
            raise ControlError(f"{MIDI_LEARN}: {exc}") from None
        return []


def learn_unavailable(values: Sequence[Any], sender: Sender) -> list[Reply]:
    """``/hamba/midi/learn`` when the daemon runs without MIDI: a clear refusal."""
    raise ControlError(f"{MIDI_LEARN}: MIDI is off (give a [midi] table or --midi-map FILE)")

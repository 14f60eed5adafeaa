"""A stand-in for mido's rtmidi backend, for the one layer these machines cannot run.

There is no ALSA sequencer here (/dev/snd is absent), so python-rtmidi cannot list or open a
port. This backend has the four calls :mod:`bridge.midi.ports` uses (``get_input_names``,
``get_output_names``, ``open_input(name, callback=...)``, ``open_output(name)``) and behaves
as mido's rtmidi backend does: an input turns raw bytes into a :class:`mido.Message`
(``Message.from_bytes``, dropping invalid ones) and calls the callback on its own thread; an
output is a real :class:`mido.ports.BaseOutput`. A device can be unplugged and plugged back.
Everything above this layer (mapping, learn, clock, soft takeover) is the real code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import mido
from mido.ports import BaseOutput


class StandInInput:
    """An open input port: what mido's ``open_input`` returns."""

    def __init__(self, device: Device, callback: Callable[[Any], None]) -> None:
        self.device = device
        self.callback: Callable[[Any], None] | None = callback
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.callback = None


class StandInOutput(BaseOutput):
    """An output port collecting what it is sent; raises once its device is unplugged."""

    def __init__(self, device: Device) -> None:
        self.device = device
        super().__init__(device.name)

    def _send(self, msg: Any) -> None:
        if not self.device.plugged:
            raise OSError(f"{self.device.name}: device gone")
        self.device.sent.append((time.monotonic(), msg))


class Device:
    """One controller: its port name, whether it is plugged in, what it received."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.plugged = True
        self.inputs: list[StandInInput] = []
        self.sent: list[tuple[float, Any]] = []

    def play(self, data: list[int]) -> None:
        """The device sends raw MIDI bytes; open inputs call back on another thread."""
        try:
            message = mido.Message.from_bytes(data)
        except ValueError:
            return  # mido's rtmidi backend drops invalid messages the same way
        callbacks = [p.callback for p in self.inputs if not p.closed and p.callback]
        threads = [threading.Thread(target=c, args=(message,)) for c in callbacks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


class StandInBackend:
    """Devices by name; the calls of a mido backend."""

    def __init__(self, *devices: Device) -> None:
        self.devices = {d.name: d for d in devices}
        self.opened: list[str] = []

    def get_input_names(self) -> list[str]:
        return [name for name, d in self.devices.items() if d.plugged]

    def get_output_names(self) -> list[str]:
        return self.get_input_names()

    def open_input(self, name: str, *, callback: Callable[[Any], None]) -> StandInInput:
        device = self._plugged(name)
        port = StandInInput(device, callback)
        device.inputs.append(port)
        self.opened.append(name)
        return port

    def open_output(self, name: str) -> StandInOutput:
        self.opened.append(name)
        return StandInOutput(self._plugged(name))

    def _plugged(self, name: str) -> Device:
        device = self.devices.get(name)
        if device is None or not device.plugged:
            raise OSError(f"unknown port {name!r}")  # what mido's rtmidi backend raises
        return device

"""MIDI ports through mido and python-rtmidi: list, open by name, survive an unplug; notes out.

mido's rtmidi backend calls a port's callback on rtmidi's own thread with a parsed
:class:`mido.Message` (clock messages included: mido asks rtmidi not to ignore timing). Every
message goes to one entry point, ``on_message(message)``, the one tests drive directly on
machines without a MIDI system (no ALSA sequencer, no CoreMIDI, no Windows MM).

A port is named by its full name or any part of it, case-insensitively (``"APC40"`` finds
``"APC40 mkII:APC40 mkII MIDI 1 20:0"``). A port that is absent at start is a
:class:`MidiError` naming it and the ports there are; a port that disappears while running
(unplugged) is a logged warning, and the port is reopened when it is back: the show goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.osc.throttle import LogThrottle
from engine.errors import HambaError

log = logging.getLogger(__name__)

MIDI_INSTALL = "pip install 'hambametal[midi]'"
"""How a user gets mido and python-rtmidi (named by every error about them)."""

RECHECK_SECONDS = 2.0
"""How often an open port checks that its device is still there (and a lost one comes back)."""


class MidiError(HambaError):
    """A MIDI port or the MIDI system cannot be used; names the port and what there is."""


class MidiBackend(Protocol):
    """What is used of a mido backend (the ``mido`` module itself is one)."""

    def get_input_names(self) -> list[str]: ...

    def get_output_names(self) -> list[str]: ...

    def open_input(self, name: str, *, callback: Callable[[Any], None]) -> Any: ...

    def open_output(self, name: str) -> Any: ...


def load_mido() -> Any:
    """The ``mido`` module; MidiError naming the install command when it (or rtmidi) is missing."""
    try:
        import mido
        import rtmidi  # noqa: F401  (mido's default backend)
    except ImportError as exc:
        raise MidiError(f"MIDI needs mido and python-rtmidi: {MIDI_INSTALL} ({exc})") from None
    return mido


def default_backend() -> MidiBackend:
    """mido's default backend (python-rtmidi)."""
    backend: MidiBackend = load_mido()
    return backend


def port_names(kind: str, backend: MidiBackend | None = None) -> list[str]:
    """The ``"input"`` or ``"output"`` port names; MidiError when there is no MIDI system."""
    backend = backend or default_backend()
    try:
        names = backend.get_input_names() if kind == "input" else backend.get_output_names()
    except OSError as exc:  # rtmidi's errors are OSErrors
        raise MidiError(f"MIDI {kind}s: no MIDI system available ({_reason(exc)})") from None
    return list(names)


def find_port(wanted: str, names: Sequence[str], kind: str) -> str:
    """The port called ``wanted``, or the one port whose name contains it; MidiError if none.

    The error names the port asked for and lists those there are.
    """
    if wanted in names:
        return wanted
    matches = [name for name in names if wanted.lower() in name.lower()]
    if len(matches) == 1:
        return matches[0]
    available = ", ".join(repr(n) for n in names) or "none"
    if matches:
        raise MidiError(f"MIDI {kind} {wanted!r} matches several ports: {available}")
    raise MidiError(f"MIDI {kind} {wanted!r} not found (ports: {available})")


def require_port(wanted: str, kind: str, backend: MidiBackend | None = None) -> str:
    """The full name of the ``"input"`` or ``"output"`` port ``wanted`` names; MidiError if none."""
    return find_port(wanted, port_names(kind, backend), kind)


def _reason(exc: BaseException) -> str:
    # rtmidi's messages end with a full stop and sometimes span lines
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


class MidiInputPort:
    """An input port kept open: messages go to ``on_message``; reopened after an unplug."""

    def __init__(
        self,
        wanted: str,
        on_message: Callable[[Any], None],
        *,
        backend: MidiBackend | None = None,
        recheck: float = RECHECK_SECONDS,
    ) -> None:
        self.wanted = wanted
        self._on_message = on_message
        self._backend = backend
        self._recheck = recheck
        self._port: Any = None
        self.name: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        """Whether the port is open now."""
        return self._port is not None

    def open(self) -> None:
        """Open the port (MidiError naming it when absent) and start watching it."""
        self._backend = self._backend or default_backend()
        self._connect(port_names("input", self._backend))
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="hamba-midi-in", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop watching and close the port; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self._disconnect()

    def check(self) -> None:
        """Notice an unplugged device (close it) or a returning one (reopen it); never raises."""
        assert self._backend is not None
        try:
            names = port_names("input", self._backend)
        except MidiError as exc:
            names = []
            reason = str(exc)
        else:
            reason = "unplugged?"
        if self._port is not None:
            if self.name not in names:
                log.warning(
                    "midi: input %r disappeared (%s): the show goes on, reconnecting when it is back",
                    self.name,
                    reason,
                )
                self._disconnect()
            return
        try:
            self._connect(names)
        except MidiError:
            return
        self.reconnects += 1
        log.info("midi: input %r is back", self.name)

    def _connect(self, names: Sequence[str]) -> None:
        assert self._backend is not None
        name = find_port(self.wanted, names, "input")
        try:
            self._port = self._backend.open_input(name, callback=self._on_message)
        except OSError as exc:
            raise MidiError(f"MIDI input {name!r}: cannot open ({_reason(exc)})") from None
        self.name = name
        log.info("midi: input %r", name)

    def _disconnect(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception as exc:  # noqa: BLE001 - a vanished device may fail to close; it is gone
                log.debug("midi: closing %r: %s", self.name, exc)

    def _watch(self) -> None:
        while not self._stop.wait(self._recheck):
            self.check()


@dataclass(frozen=True)
class BeatNoteSettings:
    """Notes sent on beats for a controller's LEDs."""

    note: int
    downbeat_note: int | None = None
    channel: int = 1
    velocity: int = 100
    length: float = 0.05


class BeatNotes:
    """Sends a note on each beat (another on downbeats) to an output port, on its own thread.

    :meth:`on_beat` (the render thread) only queues; the thread waits for the beat's wall-clock
    time, sends note on, then note off after ``length`` seconds. A send that fails (device
    unplugged) is a rate-limited warning; the port is reopened when its device is back.
    """

    def __init__(
        self,
        wanted: str,
        settings: BeatNoteSettings,
        *,
        backend: MidiBackend | None = None,
        recheck: float = RECHECK_SECONDS,
    ) -> None:
        self.wanted = wanted
        self.settings = settings
        self._backend = backend
        self._recheck = recheck
        self._port: Any = None
        self.name: str | None = None
        self._queue: queue.SimpleQueue[tuple[float, bool] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._throttle = LogThrottle(log, burst=1, interval=10.0)
        self._next_try = 0.0
        self.sent = 0
        self.failures = 0

    def open(self) -> None:
        """Open the output port (MidiError naming it when absent) and start the sender thread."""
        self._backend = self._backend or default_backend()
        self._connect()
        self._thread = threading.Thread(target=self._run, name="hamba-midi-out", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and close the port; safe to call twice."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=2.0)
            self._thread = None
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception as exc:  # noqa: BLE001 - as for inputs: a vanished device is gone
                log.debug("midi: closing %r: %s", self.name, exc)

    def on_beat(self, wall: float, downbeat: bool) -> None:
        """Queue the note for a beat at wall-clock time ``wall`` (``time.monotonic()``)."""
        self._queue.put((wall, downbeat))

    def _connect(self) -> None:
        assert self._backend is not None
        name = find_port(self.wanted, port_names("output", self._backend), "output")
        try:
            self._port = self._backend.open_output(name)
        except OSError as exc:
            raise MidiError(f"MIDI output {name!r}: cannot open ({_reason(exc)})") from None
        self.name = name
        log.info("midi: beat notes to %r", name)

    def _run(self) -> None:
        mido = load_mido()
        s = self.settings
        while True:
            item = self._queue.get()
            if item is None:
                return
            wall, downbeat = item
            delay = wall - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, 1.0))
            note = s.downbeat_note if downbeat and s.downbeat_note is not None else s.note
            on = mido.Message("note_on", channel=s.channel - 1, note=note, velocity=s.velocity)
            off = mido.Message("note_off", channel=s.channel - 1, note=note, velocity=0)
            if self._send(on):
                time.sleep(s.length)
                self._send(off)

    def _send(self, message: Any) -> bool:
        if self._port is None and not self._reopen():
            return False
        try:
            self._port.send(message)
        except Exception as exc:  # noqa: BLE001 - rtmidi raises when the device has gone
            self.failures += 1
            self._throttle.warning(
                "midi: beat note to %r failed (%s): the show goes on, retrying", self.name, exc
            )
            self._port = None
            self._next_try = time.monotonic() + self._recheck
            return False
        self.sent += 1
        return True

    def _reopen(self) -> bool:
        if time.monotonic() < self._next_try:
            return False
        self._next_try = time.monotonic() + self._recheck
        try:
            self._connect()
        except MidiError as exc:
            self._throttle.warning("midi: beat notes: %s", exc)
            return False
        return True

"""The feedback stream: music analysis and status sent to controllers every frame.

Per frame, every target gets ``/hamba/audio/energy``, ``/hamba/audio/tempo``,
``/hamba/audio/chroma`` (12 floats), ``/hamba/status/fps``, ``/hamba/status/frame`` and (from
the daemon) ``/hamba/status/drops``, plus ``/hamba/audio/beat`` (the beat count) on the frame a
beat falls in, plus what the capabilities registered with :meth:`FeedbackSender.add_provider` add
(``/hamba/status/beat_source``, the Ableton Link state ``/hamba/link/peers``,
``/hamba/link/tempo``, ``/hamba/link/phase``). :meth:`FeedbackSender.send_values` sends other
values once (the OSC server echoes control changes through it). The rate is the frame rate:
nothing is resampled or queued. By default each message is its own datagram, the form every OSC
receiver understands (TouchDesigner's OSC In CHOP, Resolume, TouchOSC); ``bundle=True`` packs a
frame's messages into one bundle, one datagram per target per frame.

Sending happens on the render thread, so it never blocks and never raises: the socket is
non-blocking UDP, host names are resolved once when a target is added, and a failed send to
one target is counted and logged (rate-limited) while the others still get theirs. The messages
are packed with ``struct`` from prefixes made once per address (type tags from the schema):
python-osc's builder parses every message it builds back, which at a thousand frames a second
costs more than sending them. ``/hamba/status/error`` (a frame failed, the engine stepped down)
goes out through :meth:`FeedbackSender.send_error`.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from pythonosc.osc_message_builder import build_msg

from bridge.osc.throttle import LogThrottle
from engine.audio.types import MusicState
from engine.errors import ControlError
from osc_schema.schema import (
    ADDRESSES,
    BEAT,
    CHROMA,
    DROPS,
    ENERGY,
    FPS,
    FRAME,
    STATUS_ERROR,
    TEMPO,
)

log = logging.getLogger(__name__)

Target = tuple[str, int]

MAX_TARGETS = 64
"""Subscriptions beyond this many are refused (a flood of /hamba/subscribe cannot grow it)."""

Provider = Callable[[], Mapping[str, tuple[Any, ...]]]
"""Adds outgoing addresses and their arguments to every frame's feedback (render thread: quick)."""


# an OSC bundle to run at once: "#bundle", then the time tag 1 ("immediately")
_BUNDLE_HEAD = b"#bundle\x00" + struct.pack(">Q", 1)
_SIZE = struct.Struct(">i")


def osc_string(text: str) -> bytes:
    """An OSC string: UTF-8, NUL-terminated, zero-padded to a multiple of 4 bytes."""
    data = text.encode() + b"\x00"
    return data + b"\x00" * (-len(data) % 4)


class _Form(NamedTuple):
    """How one address is packed: its address and tag strings, its tags, its numbers' struct."""

    prefix: bytes
    tags: str
    numbers: struct.Struct | None  # None when a string argument needs packing one by one


class MessageEncoder:
    """OSC messages to the engine's outgoing addresses, with the schema's type tags.

    The address and type-tag strings are encoded once per address; arguments are packed with
    ``struct`` (``f`` float32, ``i`` int32, ``s`` string, big-endian as OSC wants them). The
    bytes are those python-osc's ``build_msg`` makes (tested). Any other address or type tag
    (a boolean control echoed back, an address outside the schema) goes through ``build_msg``.
    """

    def __init__(self) -> None:
        self._forms: dict[str, _Form | None] = {}

    def encode(self, address: str, args: tuple[Any, ...]) -> bytes:
        if address not in self._forms:
            self._forms[address] = _learn(address)
        form = self._forms[address]
        if form is None or len(args) != len(form.tags):
            return bytes(build_msg(address, list(args)).dgram)
        if form.numbers is not None:
            return form.prefix + form.numbers.pack(*args)
        parts = [form.prefix]
        for tag, value in zip(form.tags, args, strict=True):
            parts.append(osc_string(value) if tag == "s" else struct.pack(">" + tag, value))
        return b"".join(parts)

    def bundle(self, messages: list[bytes]) -> bytes:
        """Messages as one bundle to run at once."""
        return _BUNDLE_HEAD + b"".join(_SIZE.pack(len(m)) + m for m in messages)


def _learn(address: str) -> _Form | None:
    entry = ADDRESSES.get(address)
    tags = entry.type_tags if entry is not None else ""
    if entry is None or not tags or not set(tags) <= {"f", "i", "s"}:
        return None  # python-osc's builder handles it
    numbers = None if "s" in tags else struct.Struct(">" + tags)
    return _Form(osc_string(address) + osc_string("," + tags), tags, numbers)


def resolve_target(host: str, port: int) -> Target:
    """``(ip, port)`` for a feedback target; ControlError names the target when it cannot be."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ControlError(f"feedback target {host}:{port}: port must be 1-65535")
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:
        raise ControlError(f"feedback target {host}:{port}: cannot resolve host ({exc})") from None
    return (str(infos[0][4][0]), port)


class FeedbackSender:
    """Sends the per-frame feedback to a set of UDP targets; safe to share between threads.

    The target set is an immutable tuple swapped under a lock, so :meth:`send_frame` (render
    thread) reads it without locking while the OSC server adds subscribers.
    """

    def __init__(
        self,
        targets: Iterable[Target] = (),
        *,
        bundle: bool = False,
        max_rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``max_rate``: frames a second sent at most (None: every frame); a frame a beat
        falls in is always sent. ``clock`` times the rate (monotonic seconds)."""
        if max_rate is not None and not max_rate > 0:
            raise ControlError(f"feedback rate: {max_rate} must be above 0 frames a second")
        self.bundle = bundle
        self._interval = 0.0 if max_rate is None else 1.0 / max_rate
        self._clock = clock
        self._next_send = -float("inf")
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._lock = threading.Lock()
        self._targets: tuple[Target, ...] = ()
        self._providers: tuple[Provider, ...] = ()
        self._latest: MappingProxyType[str, tuple[Any, ...]] = MappingProxyType({})
        self._throttle = LogThrottle(log)
        self._encoder = MessageEncoder()
        self.frames_sent = 0
        self.send_failures = 0
        for host, port in targets:
            self.add_target(host, port)

    @property
    def targets(self) -> tuple[Target, ...]:
        """The current targets as resolved ``(ip, port)`` pairs."""
        return self._targets

    def add_target(self, host: str, port: int) -> Target:
        """Start sending to ``host:port`` (resolved now); the resolved target.

        Adding a target twice keeps one. ControlError when the host cannot be resolved, the port
        is invalid or :data:`MAX_TARGETS` are already registered.
        """
        target = resolve_target(host, port)
        with self._lock:
            if target in self._targets:
                return target
            if len(self._targets) >= MAX_TARGETS:
                raise ControlError(
                    f"feedback target {host}:{port}: already {MAX_TARGETS} targets, no more"
                )
            self._targets = (*self._targets, target)
        log.info("feedback: sending to %s:%d", *target)
        return target

    def remove_target(self, host: str, port: int) -> bool:
        """Stop sending to ``host:port``; False when it was not a target."""
        target = resolve_target(host, port)
        with self._lock:
            if target not in self._targets:
                return False
            self._targets = tuple(t for t in self._targets if t != target)
        log.info("feedback: stopped sending to %s:%d", *target)
        return True

    def add_provider(self, provider: Provider) -> None:
        """Add ``provider()``'s messages to every frame from now on (a failing one is logged)."""
        with self._lock:
            self._providers = (*self._providers, provider)

    def latest(self) -> MappingProxyType[str, tuple[Any, ...]]:
        """The arguments last sent to each outgoing address (for OSCQuery VALUE)."""
        return self._latest

    def send_frame(
        self, state: MusicState, *, fps: float, frame: int, drops: int | None = None
    ) -> None:
        """Send one frame's analysis and status to every target; never raises, never blocks.

        ``drops`` (frames dropped so far) is sent on ``/hamba/status/drops`` when given. Above
        ``max_rate`` frames a second, frames without a beat are left out: controllers and meters
        need no more, and the render loop saves the work.
        """
        if self._interval:
            now = self._clock()
            if now >= self._next_send:
                # due one interval after this one, not after the last due time: a late frame
                # does not make the next ones come in a burst
                self._next_send = now + self._interval
            elif not state.beat:
                return  # a beat goes out between the regular frames, and changes no cadence
        values: dict[str, tuple[Any, ...]] = {
            ENERGY: (float(state.energy),),
            TEMPO: (float(state.tempo),),
            CHROMA: tuple(state.chroma.tolist()),
            FPS: (float(fps),),
            FRAME: (int(frame),),
        }
        if drops is not None:
            values[DROPS] = (int(drops),)
        if state.beat:
            values[BEAT] = (int(state.beat_count),)
        for provider in self._providers:
            try:
                values.update(provider())
            except Exception as exc:  # noqa: BLE001 - a capability's bug must not stop the render loop
                self._fail(
                    "feedback: %s failed: %s", getattr(provider, "__qualname__", provider), exc
                )
        self._latest = MappingProxyType({**self._latest, **values})
        if self._send(values, f"frame {frame}"):
            self.frames_sent += 1

    def send_values(self, values: Mapping[str, tuple[Any, ...]]) -> None:
        """Send these messages once to every target (not remembered); never raises or blocks."""
        if values:
            self._send(dict(values), "values")

    def _send(self, values: dict[str, tuple[Any, ...]], what: str) -> bool:
        """Encode and send to every target; False when there was nothing to send."""
        targets = self._targets
        if not targets:
            return False
        try:
            datagrams = self._encode(values)
        except Exception as exc:  # noqa: BLE001 - an unencodable value must not stop the render loop
            self._fail("feedback: cannot encode %s: %s", what, exc)
            return False
        for target in targets:
            for datagram in datagrams:
                try:
                    self._sock.sendto(datagram, target)
                except OSError as exc:
                    self._fail("feedback: send to %s:%d failed: %s", *target, exc)
                    break
        return True

    def send_error(self, frame: int, reason: str) -> None:
        """Send ``/hamba/status/error frame reason`` to every target; never raises, never
        blocks (the caller rate-limits)."""
        values = {STATUS_ERROR: (max(int(frame), 0), str(reason)[:500])}
        self._latest = MappingProxyType({**self._latest, **values})
        self._send(values, f"error of frame {frame}")

    def close(self) -> None:
        """Release the socket; later frames are not sent."""
        with self._lock:
            self._targets = ()
        self._sock.close()

    def _encode(self, values: dict[str, tuple[Any, ...]]) -> list[bytes]:
        encode = self._encoder.encode
        messages = [encode(address, args) for address, args in values.items()]
        return [self._encoder.bundle(messages)] if self.bundle else messages

    def _fail(self, message: str, *args: Any) -> None:
        self.send_failures += 1
        self._throttle.warning(message, *args)

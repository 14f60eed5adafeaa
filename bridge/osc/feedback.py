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
one target is counted and logged (rate-limited) while the others still get theirs.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import build_msg

from bridge.osc.throttle import LogThrottle
from engine.audio.types import MusicState
from engine.errors import ControlError
from osc_schema.schema import BEAT, CHROMA, DROPS, ENERGY, FPS, FRAME, TEMPO

log = logging.getLogger(__name__)

Target = tuple[str, int]

MAX_TARGETS = 64
"""Subscriptions beyond this many are refused (a flood of /hamba/subscribe cannot grow it)."""

Provider = Callable[[], Mapping[str, tuple[Any, ...]]]
"""Adds outgoing addresses and their arguments to every frame's feedback (render thread: quick)."""


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

    def __init__(self, targets: Iterable[Target] = (), *, bundle: bool = False) -> None:
        self.bundle = bundle
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._lock = threading.Lock()
        self._targets: tuple[Target, ...] = ()
        self._providers: tuple[Provider, ...] = ()
        self._latest: MappingProxyType[str, tuple[Any, ...]] = MappingProxyType({})
        self._throttle = LogThrottle(log)
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

        ``drops`` (frames dropped so far) is sent on ``/hamba/status/drops`` when given.
        """
        values: dict[str, tuple[Any, ...]] = {
            ENERGY: (float(state.energy),),
            TEMPO: (float(state.tempo),),
            CHROMA: tuple(float(c) for c in state.chroma),
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
            except Exception as exc:  # a capability's bug must not stop the render loop
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
        targets = self._targets
        if not targets:
            return False
        try:
            datagrams = self._encode(values)
        except Exception as exc:  # a value python-osc cannot encode must not stop the render loop
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

    def close(self) -> None:
        """Release the socket; later frames are not sent."""
        with self._lock:
            self._targets = ()
        self._sock.close()

    def _encode(self, values: dict[str, tuple[Any, ...]]) -> list[bytes]:
        messages = [build_msg(address, list(args)) for address, args in values.items()]
        if not self.bundle:
            return [m.dgram for m in messages]
        builder = OscBundleBuilder(IMMEDIATELY)
        for message in messages:
            builder.add_content(message)
        return [builder.build().dgram]

    def _fail(self, message: str, *args: Any) -> None:
        self.send_failures += 1
        self._throttle.warning(message, *args)

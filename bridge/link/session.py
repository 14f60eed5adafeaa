"""One Ableton Link peer: follow the session, lead it with the music's beat, or auto.

Binding: `LinkPython-extern <https://pypi.org/project/LinkPython-extern/>`_ (import name
``link``), a pybind11 wrapper of Ableton's Link library. Chosen over ``aalink`` because it
exposes Link's whole session-state API at any time, not only now (``beatAtTime``,
``phaseAtTime``, ``setTempo``, ``forceBeatAtTime`` take a time): the daemon reads the beat at a
frame's own time, which with a file is ahead of now, and the render thread must not wait on an
event loop (aalink is built around asyncio). It ships typed stubs and wheels for CPython
3.9-3.14 on Linux (x86_64, aarch64), macOS (Intel, Apple silicon) and Windows; it is an
optional extra (``pip install 'hambametal[link]'``).
Ableton Link itself is GPL-2.0-or-later (or Ableton's proprietary licence).

Modes:

- ``follow``: beat, beat phase, bar phase (the quantum, default 4 beats) and tempo come from
  the session (see :meth:`LinkSession.reading`); the music still gives energy, onsets, chroma.
- ``lead``: the beat grid the engine hears (:meth:`bridge.music.MusicSource.beat_grid`) is
  published: the session's tempo is set to it and its beats are moved onto the music's beats
  (``forceBeatAtTime``, the call Link's documentation reserves for bridging an external clock)
  whenever they drift apart by more than :data:`PHASE_TOLERANCE` seconds.
- ``auto``: leads while no other peer has changed the tempo; follows from the moment another
  peer changes the session's tempo (joining a session that runs at another tempo counts); leads
  again once it is alone.

Link's clock is ``CLOCK_MONOTONIC_RAW`` on Linux (microseconds), the daemon's is
``time.monotonic()``: every conversion reads both clocks at once, so their offset never matters.
A background thread (``hamba-link``) does the leading and the mode switches every
:data:`POLL_SECONDS`; the render thread only captures the session state, which is lock-free.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from bridge.beats.base import BeatGrid, BeatReading
from bridge.osc.throttle import LogThrottle
from engine.errors import HambaError
from osc_schema.schema import LINK_PEERS, LINK_PHASE, LINK_TEMPO

log = logging.getLogger(__name__)

LinkMode = Literal["follow", "lead", "auto"]

LINK_INSTALL = "pip install 'hambametal[link]'"
"""How a user gets the Link binding (named by every error about it)."""

POLL_SECONDS = 0.05
"""How often the lead publishes and auto checks the session."""

PHASE_TOLERANCE = 0.005
"""Lead: the session's beats are moved onto the music's once they are this far apart (s)."""

TEMPO_TOLERANCE = 0.02
"""Lead: a tempo this close (BPM) to the session's is not re-published; auto: a session tempo
further than this from the one last published was set by another peer."""


class LinkError(HambaError):
    """Ableton Link cannot be used (the binding is missing or broken); names the fix."""


def load_link() -> Any:
    """The ``link`` module of LinkPython-extern; LinkError naming the install command."""
    try:
        import link
    except ImportError as exc:
        raise LinkError(
            f"Ableton Link needs the LinkPython-extern package: {LINK_INSTALL} ({exc})"
        ) from None
    if not hasattr(link, "Link"):
        where = getattr(link, "__file__", "?")
        raise LinkError(f"the module 'link' at {where} is not LinkPython-extern: {LINK_INSTALL}")
    return link


class LinkSession:
    """A Link peer in one of the modes; a beat source (``name`` "link") and a feedback provider.

    ``grid`` gives the music's beat grid (lead, auto); ``tempo`` is the tempo the peer starts
    with when it founds a session. Nothing touches the network before :meth:`start`.
    """

    name = "link"

    def __init__(
        self,
        mode: LinkMode,
        *,
        quantum: float = 4.0,
        tempo: float = 120.0,
        grid: Callable[[], BeatGrid | None] | None = None,
        module: Any = None,
    ) -> None:
        if quantum <= 0:
            raise LinkError(f"Link quantum must be positive, got {quantum}")
        if mode in ("lead", "auto") and grid is None:
            raise LinkError(f"Link {mode} needs the music's beat grid")
        self.mode: LinkMode = mode
        self.quantum = float(quantum)
        self._module = module if module is not None else load_link()
        self._link = self._module.Link(float(tempo) if tempo > 0 else 120.0)
        self._clock = self._link.clock()
        self._grid = grid
        self._following = mode == "follow"
        self._published: float | None = None
        self._peers = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._throttle = LogThrottle(log, burst=1, interval=10.0)
        self.description = f"Ableton Link ({mode}, quantum {self.quantum:g})"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Join the network (discovery starts) and start the background thread."""
        if self._thread is not None:
            return
        self._link.enabled = True
        self._published = self._session().tempo()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hamba-link", daemon=True)
        self._thread.start()
        log.info("link: %s, quantum %g", self.mode, self.quantum)

    def stop(self) -> None:
        """Leave the session; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self._link.enabled = False

    # -- reading (render thread) -------------------------------------------------------------

    @property
    def following(self) -> bool:
        """True when the session drives this peer (follow, or auto after another peer's tempo)."""
        return self._following

    def wants_auto(self) -> bool:
        """Under beat source ``auto``, Link drives the picture while it is followed."""
        return self._following

    @property
    def peers(self) -> int:
        """Other peers in the session."""
        return int(self._link.numPeers())

    def micros(self, wall: float) -> int:
        """Link's clock (microseconds) at wall-clock time ``wall`` (``time.monotonic()``).

        Link's clock starts at boot; earlier times read as 0 (the binding takes no negatives).
        """
        return max(0, int(self._clock.micros() + round((wall - time.monotonic()) * 1e6)))

    def reading(self, wall: float) -> BeatReading:
        """The session's beat position (multiples of the quantum are downbeats) and tempo."""
        state = self._session()
        at = self.micros(wall)
        return BeatReading(
            float(state.beatAtTime(at, self.quantum)), float(state.tempo()), self.quantum
        )

    def feedback_values(self) -> dict[str, tuple[Any, ...]]:
        """``/hamba/link/peers``, ``/hamba/link/tempo`` and ``/hamba/link/phase`` now."""
        state = self._session()
        now = self._clock.micros()
        return {
            LINK_PEERS: (self.peers,),
            LINK_TEMPO: (float(state.tempo()),),
            LINK_PHASE: (float(state.phaseAtTime(now, self.quantum)),),
        }

    # -- leading and switching (background thread) ------------------------------------------

    def step(self) -> None:
        """One poll: note peers coming and going, switch modes (auto), publish (lead)."""
        peers = self.peers
        if peers != self._peers:
            log.info("link: %d other peer%s", peers, "" if peers == 1 else "s")
            self._peers = peers
        if self.mode == "auto":
            self._switch(peers)
        if self.mode == "lead" or (self.mode == "auto" and not self._following):
            self.publish(self._grid() if self._grid is not None else None)

    def publish(self, grid: BeatGrid | None) -> bool:
        """Move the session onto ``grid`` (tempo, then beats); True when it had to be moved."""
        if grid is None or grid.period <= 0:
            return False
        state = self._session()
        now_wall = time.monotonic()
        now = self.micros(now_wall)
        changed = False
        if abs(state.tempo() - grid.tempo) > TEMPO_TOLERANCE:
            state.setTempo(grid.tempo, now)
            changed = True
        beat = state.beatAtTime(now, self.quantum)
        # the music's beat phase against the session's, wrapped to the nearest beat
        error = (grid.position(now_wall) - beat + 0.5) % 1.0 - 0.5
        if abs(error) * grid.period > PHASE_TOLERANCE:
            state.forceBeatAtTime(beat + error, now, self.quantum)
            changed = True
        if changed:
            self._link.commitAppSessionState(state)
            self._published = self._session().tempo()
        return changed

    def _switch(self, peers: int) -> None:
        tempo = self._session().tempo()
        if self._following and peers == 0:
            self._following = False
            self._published = tempo
            log.info("link: alone in the session: leading it with the music's beat")
        elif (
            not self._following
            and peers > 0
            and self._published is not None
            and abs(tempo - self._published) > TEMPO_TOLERANCE
        ):
            self._following = True
            log.info("link: another peer set the tempo to %.2f BPM: following the session", tempo)

    def _session(self) -> Any:
        return self._link.captureAppSessionState()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - a bad poll must not end the session
                self._throttle.log(logging.WARNING, "link: poll failed: %s", exc, exc_info=True)

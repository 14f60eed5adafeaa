"""The test's own Link peer: LinkPython-extern used directly, with its own clock conversion.

Its conversion between ``time.monotonic()`` seconds and Link's microseconds is its own, so a
mistake in the daemon's or LinkSession's conversion cannot cancel out. Only ever run inside a
private network namespace (see netns.py): Link discovery multicasts on every interface.
"""

from __future__ import annotations

import math
import time
from typing import Any

import link


class Peer:
    """A Link peer at ``bpm``, enabled (joining any session it finds) from the start."""

    def __init__(self, bpm: float) -> None:
        self.link = link.Link(bpm)
        self.clock = self.link.clock()
        self.link.enabled = True

    def micros(self, wall: float) -> int:
        """Link's clock (microseconds) at the ``time.monotonic()`` time ``wall``."""
        return int(self.clock.micros() + (wall - time.monotonic()) * 1e6)

    def wall(self, micros: float) -> float:
        """The ``time.monotonic()`` time at Link's clock time ``micros``."""
        return time.monotonic() + (micros - self.clock.micros()) / 1e6

    def state(self) -> Any:
        """A snapshot of the session (LinkPython-extern's SessionState)."""
        return self.link.captureAppSessionState()

    @property
    def tempo(self) -> float:
        return float(self.state().tempo())

    @property
    def peers(self) -> int:
        """How many other peers this one sees."""
        return int(self.link.numPeers())

    def beat_walls(self, start: float, end: float, quantum: float) -> list[float]:
        """Wall times of the session's beats between two wall times."""
        state = self.state()
        first = math.ceil(state.beatAtTime(self.micros(start), quantum))
        last = math.floor(state.beatAtTime(self.micros(end), quantum))
        return [self.wall(state.timeAtBeat(float(b), quantum)) for b in range(first, last + 1)]

    def set_tempo(self, bpm: float) -> None:
        state = self.state()
        state.setTempo(bpm, self.clock.micros())
        self.link.commitAppSessionState(state)

    def leave(self) -> None:
        self.link.enabled = False

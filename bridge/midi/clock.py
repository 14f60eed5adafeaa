"""MIDI clock in as a beat source: 24 clocks a beat, start, stop, continue, song position.

The tempo is the slope of a robust (Theil-Sen) line through the arrival times of the last
:data:`WINDOW` clocks (two beats): the median of the slopes between every two of them. Arrival
times jitter by the USB and OS scheduling delay, which the many pairs average out; a stalled
receiving thread delivers several clocks at once, late, which a median shrugs off (the interval
between two clocks, or a least-squares line, would swing with either). The position between clocks is read
off the same line, so the beat phase runs smoothly between messages.

What the sender's messages mean (MIDI 1.0): ``start`` puts the song at its beginning, and the
first clock after it is beat 0 (a downbeat); ``songpos`` (song position pointer, in sixteenth
notes) moves the song while stopped; ``stop`` halts it where it is; ``continue`` resumes.
Without a start or a song position (the clock was already running when hamba joined) the bar
is unknown and the beats are counted from the first clock heard.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from bridge.beats.base import BeatReading

PPQN = 24
"""MIDI clocks per quarter note (beat)."""

WINDOW = 48
"""Clocks in the tempo fit (two beats)."""

CLOCKS_PER_SIXTEENTH = PPQN // 4

MAX_EXTRAPOLATION = 0.5
"""Seconds the position runs on past the last clock heard: a clock that stops without a
``stop`` message halts the beat instead of running away."""

STALLED = 0.5
"""A clock not heard for this long is not running (``auto`` then stops choosing it)."""

# an interval this many times the fitted one (half a beat) is a pause, not a stalled receiver:
# start the fit afresh
_GAP = 12.0
# once a tempo is known, a new one needs this many clocks (fewer are too close to each other)
_MIN_CLOCKS = 12
# tempi a MIDI clock can carry, in seconds per clock (400 down to 20 BPM)
_SPT_RANGE = (60.0 / 400.0 / 24, 60.0 / 20.0 / 24)


def _robust_line(ticks: np.ndarray, times: np.ndarray) -> tuple[float, float]:
    """(seconds per tick, intercept) of ``times`` against ``ticks``: Theil-Sen (the median of
    the slopes between every two clocks, then the median intercept)."""
    i, j = np.triu_indices(len(ticks), k=1)
    slope = float(np.median((times[j] - times[i]) / (ticks[j] - ticks[i])))
    return slope, float(np.median(times - slope * ticks))


@dataclass(frozen=True)
class _Fit:
    tick: int  # the latest clock's position (clocks since the song start)
    time: float  # its time on the fitted line
    seconds_per_tick: float
    heard: float  # when the latest clock arrived


class MidiClock:
    """A beat source (``name`` "midi") fed with clock messages by :meth:`handle`.

    ``quantum`` is the bar length in beats (used once the bar is known); ``auto`` says whether
    a running clock may drive the picture under beat source ``auto`` (``[midi] clock``).
    Thread-safe: the MIDI callback thread writes, the render thread reads.
    """

    name = "midi"

    def __init__(self, *, quantum: float = 4.0, auto: bool = False) -> None:
        self.quantum = float(quantum)
        self.auto = auto
        self._lock = threading.Lock()
        self._times: deque[float] = deque(maxlen=WINDOW)
        self._ticks: deque[int] = deque(maxlen=WINDOW)
        self._tick = -1  # position of the latest clock; the next clock moves it on by one
        self._playing = True  # a clock heard without a start plays (many senders never start)
        self._bar_known = False
        self._fit: _Fit | None = None
        self.clocks = 0

    # -- input (MIDI thread) ----------------------------------------------------------------

    def handle(self, kind: str, at: float, song_position: int | None = None) -> None:
        """One realtime message: ``clock``, ``start``, ``stop``, ``continue`` or ``songpos``.

        ``at`` is its arrival time (``time.monotonic()``); ``song_position`` is the pointer of
        a ``songpos`` message, in sixteenth notes. Other kinds are ignored.
        """
        with self._lock:
            if kind == "clock":
                self._on_clock(at)
            elif kind == "start":
                self._restart(-1, bar_known=True)
            elif kind == "stop":
                self._playing = False
            elif kind == "continue":
                self._playing = True
                self._times.clear()
                self._ticks.clear()
            elif kind == "songpos" and song_position is not None:
                self._restart(song_position * CLOCKS_PER_SIXTEENTH - 1, bar_known=True)
                self._playing = False

    def _restart(self, tick: int, *, bar_known: bool) -> None:
        self._tick = tick
        self._bar_known = bar_known
        self._playing = True
        self._times.clear()
        self._ticks.clear()
        if self._fit is not None:
            # keep the tempo until the new clocks give one; the position starts over
            self._fit = _Fit(tick, self._fit.time, self._fit.seconds_per_tick, self._fit.heard)

    def _on_clock(self, at: float) -> None:
        self.clocks += 1
        if not self._playing:
            return
        fit = self._fit
        if self._times and fit is not None and at - self._times[-1] > _GAP * fit.seconds_per_tick:
            self._times.clear()
            self._ticks.clear()
        self._tick += 1
        self._times.append(at)
        self._ticks.append(self._tick)
        if len(self._times) >= (3 if fit is None else _MIN_CLOCKS):
            ticks = np.asarray(self._ticks, dtype=np.float64)
            times = np.asarray(self._times, dtype=np.float64)
            slope, intercept = _robust_line(ticks, times)
            if _SPT_RANGE[0] <= slope <= _SPT_RANGE[1]:
                self._fit = _Fit(self._tick, intercept + slope * self._tick, slope, at)
                return
        if fit is not None:
            self._fit = _Fit(self._tick, at, fit.seconds_per_tick, at)

    # -- reading (render thread) ------------------------------------------------------------

    @property
    def tempo(self) -> float:
        """The fitted tempo in BPM (0 before three clocks)."""
        fit = self._fit
        return 60.0 / (fit.seconds_per_tick * PPQN) if fit is not None else 0.0

    def running(self, now: float) -> bool:
        """Playing, and a clock was heard within the last :data:`STALLED` seconds."""
        fit = self._fit
        return self._playing and fit is not None and now - fit.heard <= STALLED

    def wants_auto(self) -> bool:
        """Under beat source ``auto``, a running clock drives when ``[midi] clock`` is on."""
        return self.auto and self.running(time.monotonic())

    def reading(self, wall: float) -> BeatReading | None:
        """The song position in beats at ``wall`` (bars known after start or song position)."""
        with self._lock:
            fit, playing, bar_known = self._fit, self._playing, self._bar_known
        if fit is None:
            return None
        if playing:
            ahead = min(wall, fit.heard + MAX_EXTRAPOLATION) - fit.time
            tick = fit.tick + max(ahead, -fit.seconds_per_tick * PPQN) / fit.seconds_per_tick
        else:
            tick = float(fit.tick)
        tempo = 60.0 / (fit.seconds_per_tick * PPQN)
        return BeatReading(tick / PPQN, tempo, self.quantum if bar_known else None)

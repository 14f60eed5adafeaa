"""The beat-source interface and the arithmetic shared by every clock-like source.

A clock-like source (Link, MIDI clock) answers one question: at wall-clock time ``t``
(``time.monotonic()`` seconds), where on its beat timeline are we, at what tempo, and does it
know where bars start? :class:`BeatCounter` turns such an answer at the start of each video
frame into the fields a :class:`~engine.audio.types.MusicState` carries, with the same
conventions as the audio analysis: a beat belongs to the frame its time falls in, the beat phase
is 0 on that frame and rises towards 1 at the next beat.

:class:`BeatGrid` is the other direction: the steady grid the music implies (a beat period and
the wall time of one beat), which a Link leader publishes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "BeatCounter",
    "BeatGrid",
    "BeatReading",
    "BeatSource",
    "FrameBeat",
    "fit_grid",
]

# the phase never reaches 1: the next beat's frame starts over at 0
_PHASE_MAX = 1.0 - 1e-6


@dataclass(frozen=True)
class BeatReading:
    """Where a beat source's timeline is at one moment.

    ``position`` is in beats (continuous; its integer steps are beats). ``quantum`` is the
    number of beats per bar when the source knows where bars start (position 0, and every
    multiple of the quantum, is a downbeat); None when it does not.
    """

    position: float
    tempo: float
    quantum: float | None = None


class BeatSource(Protocol):
    """A clock-like beat source: Link, MIDI clock. Readable from any thread, never blocks."""

    name: str

    def reading(self, wall: float) -> BeatReading | None:
        """The timeline at wall-clock time ``wall`` (``time.monotonic()``); None before it runs."""
        ...

    def wants_auto(self) -> bool:
        """Whether this source should drive the picture under beat source ``auto`` right now."""
        ...


@dataclass(frozen=True)
class FrameBeat:
    """A frame's beat fields (see :class:`~engine.audio.types.MusicState`)."""

    beat: bool
    beat_phase: float
    beat_count: int
    tempo: float
    bar_phase: float | None
    downbeat: bool


class BeatCounter:
    """Turns readings at successive frames into beat fields; one per source, reset on switch.

    The count starts at the bar (or beat) the first reading falls in, so ``beat_count`` is 0 on
    a downbeat when the source knows bars; a beat that fell in a dropped frame still fires on
    the next frame shown (the audio analysis behaves the same way).
    """

    def __init__(self) -> None:
        self._origin: int | None = None
        self._shown: int | None = None

    def reset(self) -> None:
        """Forget the origin and the last beat shown (a new start, another source)."""
        self._origin = None
        self._shown = None

    def frame(self, start: BeatReading, period: float) -> FrameBeat:
        """The fields of the frame that starts at ``start`` and lasts ``period`` seconds."""
        end_position = start.position + start.tempo / 60.0 * period
        # the latest beat before the frame ends: beats in [start, end) belong to this frame
        latest = math.ceil(end_position) - 1
        quantum = start.quantum
        bar = max(1, round(quantum)) if quantum is not None else 1
        if self._origin is None or latest < self._origin - 1:
            # start (again) at the bar this beat falls in: counts then line up with bars
            self._origin = (latest // bar) * bar
        beat = self._shown is not None and latest > self._shown
        self._shown = latest
        phase = min(max(start.position - latest, 0.0), _PHASE_MAX)
        bar_phase: float | None = None
        downbeat = False
        if quantum is not None:
            bar_phase = min(((latest % bar) + phase) / bar, _PHASE_MAX)
            downbeat = beat and latest % bar == 0
        return FrameBeat(
            beat=beat,
            beat_phase=phase,
            beat_count=max(0, latest - self._origin),
            tempo=start.tempo,
            bar_phase=bar_phase,
            downbeat=downbeat,
        )


@dataclass(frozen=True)
class BeatGrid:
    """A steady beat grid: one beat every ``period`` seconds, one of them at ``anchor``.

    ``anchor`` is a wall-clock time (``time.monotonic()``) where a beat falls.
    """

    period: float
    anchor: float

    @property
    def tempo(self) -> float:
        """The grid's tempo in BPM."""
        return 60.0 / self.period

    def position(self, wall: float) -> float:
        """Beats since the anchor at wall-clock time ``wall`` (negative before it)."""
        return (wall - self.anchor) / self.period

    def shifted(self, offset: float) -> BeatGrid:
        """The same grid with its anchor moved by ``offset`` seconds (music time to wall time)."""
        return BeatGrid(self.period, self.anchor + offset)


def fit_grid(
    beat_times: npt.NDArray[np.float64], around: float, *, beats: int = 16
) -> BeatGrid | None:
    """The local grid of the ``beats`` beats nearest ``around`` (same time base), or None.

    A least-squares line through beat number and time: the tracker's sub-frame jitter averages
    out. Beats are numbered by their distance in median intervals, so a missed beat leaves a
    gap in the numbering instead of bending the line. Fewer than three beats give None.
    """
    times = np.asarray(beat_times, dtype=np.float64)
    if times.size < 3:
        return None
    nearest = np.sort(times[np.argsort(np.abs(times - around))[:beats]])
    if nearest.size < 3:
        return None
    interval = float(np.median(np.diff(nearest)))
    if interval <= 0:
        return None
    numbers = np.round((nearest - nearest[0]) / interval)
    if np.unique(numbers).size < 2:
        return None
    slope, intercept = np.polyfit(numbers, nearest, 1)
    if slope <= 0:
        return None
    # the anchor: the fitted beat closest to ``around``
    k = round((around - intercept) / slope)
    return BeatGrid(float(slope), float(intercept + k * slope))

"""The daemon's music with its beat taken from the chosen beat source.

:class:`SyncedMusic` wraps a :class:`~bridge.music.MusicSource` (a file or a live input): energy,
onsets, bands and chroma always come from the music; beat, beat phase, beat count, tempo, bar
phase and downbeat come from the beat source that drives the picture now. One drives at a time:

1. the ``beat_source`` live control (``/hamba/beat_source``, ``--beat-source``, ``[run]
   beat_source``) names ``audio``, ``link`` or ``midi`` explicitly; a source that is not running
   (no ``--link``, no MIDI input) is reported once and the automatic choice applies instead;
2. ``auto`` (the default) takes the first of: Link while it is followed (``--link follow``, or
   ``--link auto`` after another peer set the tempo); a running MIDI clock when ``[midi] clock``
   is on; the audio analysis.

The wrapper reads the control once per frame (a reference read), so a switch lands between
frames. Switching restarts the beat count at the new source's bar; the picture keeps rendering.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from bridge.beats.base import BeatCounter, BeatGrid, BeatSource
from bridge.music import MusicSource
from bridge.osc.throttle import LogThrottle
from engine.audio.types import MusicState
from engine.controls import ControlStore
from osc_schema.schema import BEAT_SOURCE_STATUS

log = logging.getLogger(__name__)

AUTO_PRECEDENCE: tuple[str, ...] = ("link", "midi")
"""Under ``auto``, the first of these that wants to drive does; audio otherwise."""

BeatListener = Callable[[float, bool], None]
"""Called with a beat frame's wall-clock time (``time.monotonic()``) and whether it is a downbeat."""


class SyncedMusic:
    """A :class:`~bridge.music.MusicSource` whose beat comes from the active beat source."""

    def __init__(
        self,
        music: MusicSource,
        controls: ControlStore,
        fps: float,
        sources: Mapping[str, BeatSource] | None = None,
    ) -> None:
        self.music = music
        self.description = music.description
        self._controls = controls
        self._period = 1.0 / fps
        self._sources = dict(sources or {})
        self._counter = BeatCounter()
        self._active: str | None = None
        self._warned: str | None = None
        self._listeners: list[BeatListener] = []
        self._beat_count = 0
        self._started = False
        self._throttle = LogThrottle(log, burst=1, interval=10.0)

    # -- MusicSource -------------------------------------------------------------------------

    @property
    def can_look_ahead(self) -> bool:
        return self.music.can_look_ahead

    def start(self) -> None:
        self.music.start()
        self._counter.reset()
        self._started = True
        # when the music's time 0 is on the clock beat sources read: for checking sync by hand
        log.info("music clock: time 0 at %.6f s (monotonic)", time.monotonic() - self.clock())

    def stop(self) -> None:
        self._started = False
        self.music.stop()

    def clock(self) -> float:
        return self.music.clock()

    def finished(self) -> bool:
        return self.music.finished()

    def beat_grid(self) -> BeatGrid | None:
        return self.music.beat_grid()

    def state_at(self, index: int, time_s: float) -> MusicState:
        state = self.music.state_at(index, time_s)
        if not self._started:
            # warm-up frames before the music starts have no wall-clock time yet
            return state
        name = self.active_source()
        if name != self._active:
            was = f" (was {self._active})" if self._active is not None else ""
            log.info("beat source: %s%s", name, was)
            self._active = name
            self._counter.reset()
        wall = time.monotonic() - self.music.clock() + time_s
        if name != "audio":
            try:
                state = self._from_source(state, self._sources[name], wall)
            except Exception as exc:  # noqa: BLE001 - a beat source's failure costs the beat, not the show
                self._throttle.log(
                    logging.WARNING, "beat source %s failed: %s", name, exc, exc_info=True
                )
        self._beat_count = state.beat_count
        if state.beat:
            for listener in self._listeners:
                listener(wall, state.downbeat)
        return state

    # -- choosing ----------------------------------------------------------------------------

    @property
    def active(self) -> str:
        """The beat source that drove the latest frame: audio, link or midi."""
        return self._active or "audio"

    def active_source(self) -> str:
        """The beat source that drives now, by the rules in the module docstring."""
        requested = self._controls.values.beat_source
        if requested == "audio" or requested in self._sources:
            self._warned = None
            return requested
        if requested != "auto" and self._warned != requested:
            self._warned = requested
            log.warning(
                "beat source %s asked for, but %s is not on (%s): choosing automatically",
                requested,
                requested,
                "start with --link" if requested == "link" else "configure a [midi] input",
            )
        for name in AUTO_PRECEDENCE:
            source = self._sources.get(name)
            if source is not None and source.wants_auto():
                return name
        return "audio"

    def add_beat_listener(self, listener: BeatListener) -> None:
        """Call ``listener(wall_time, downbeat)`` on every beat frame (on the render thread)."""
        self._listeners.append(listener)

    def feedback_values(self) -> dict[str, tuple[Any, ...]]:
        """``/hamba/status/beat_source``: which source drives the picture."""
        return {BEAT_SOURCE_STATUS: (self.active,)}

    def _from_source(self, state: MusicState, source: BeatSource, wall: float) -> MusicState:
        reading = source.reading(wall)
        if reading is None:
            # the source has not started (no clock yet): the beat stands still
            return dataclasses.replace(
                state, beat=False, beat_phase=0.0, beat_count=self._beat_count, tempo=0.0
            )
        beat = self._counter.frame(reading, self._period)
        return dataclasses.replace(
            state,
            beat=beat.beat,
            beat_phase=beat.beat_phase,
            beat_count=beat.beat_count,
            tempo=beat.tempo,
            bar_phase=beat.bar_phase,
            downbeat=beat.downbeat,
        )

"""Music for the daemon: what the music is at wall-clock time t, from a file or a live input.

A file is analysed offline once (cached), then read against a monotonic clock that starts when
playback starts, so the frame shown at t uses the music at t and the renderer may look ahead by
its own latency. Live input is captured by PortAudio and analysed block by block on a thread of
its own; the render loop only reads the latest state.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from bridge.beats.base import BeatGrid, fit_grid
from engine.audio.analyzer import AudioAnalyzer
from engine.audio.live import FileAudioSource, LiveAudioSource, resolve_input_device
from engine.audio.streaming import StreamingAnalyzer
from engine.audio.types import AudioFeatures, MusicState
from engine.config import AudioConfig

log = logging.getLogger(__name__)


class MusicSource(Protocol):
    """Where the daemon gets the music from."""

    description: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def clock(self) -> float:
        """Seconds of music since the start (wraps when looping)."""
        ...

    def state_at(self, index: int, time_s: float) -> MusicState:
        """The music at video frame ``index`` / time ``time_s`` (seconds since the start)."""
        ...

    def finished(self) -> bool:
        """True once a non-looping file has played to its end."""
        ...

    @property
    def can_look_ahead(self) -> bool:
        """Whether future music is known (a file) so render latency can be compensated."""
        ...

    def beat_grid(self) -> BeatGrid | None:
        """The beat grid the music implies now, anchored in ``time.monotonic()`` seconds.

        None while no steady beat is known (silence, before the tracker locks). A Link leader
        publishes it; any thread may call it.
        """
        ...


class FeatureMusic:
    """Features known up front (an analysed song), read against a monotonic clock."""

    def __init__(self, features: AudioFeatures, *, loop: bool = False, name: str = "features"):
        self.features = features
        self.loop = loop
        self._start = 0.0
        self.description = f"{name} ({features.duration:.1f} s, {features.tempo:.0f} BPM)"

    @property
    def can_look_ahead(self) -> bool:
        return True

    def start(self) -> None:
        self._start = time.monotonic()

    def stop(self) -> None:
        pass

    def clock(self) -> float:
        return time.monotonic() - self._start

    def finished(self) -> bool:
        return not self.loop and self.clock() >= self.features.duration

    def state_at(self, index: int, time_s: float) -> MusicState:
        n = self.features.num_frames
        local = int(time_s * self.features.fps)
        local = local % n if self.loop else min(max(local, 0), n - 1)
        return dataclasses.replace(self.features.state_at_frame(local), frame=index, time=time_s)

    def beat_grid(self) -> BeatGrid | None:
        features = self.features
        times = features.beat_times
        if times.size == 0:
            # features made without tracked times: the middle of each beat's frame
            times = (features.beat_frames.astype(np.float64) + 0.5) / features.fps
        now = self.clock()
        local = now % features.duration if self.loop and features.duration > 0 else now
        grid = fit_grid(times, local)
        # music time -> wall time: the song's time 0 was ``now - local`` seconds ago
        return grid.shifted(time.monotonic() - local) if grid is not None else None


class FileMusic(FeatureMusic):
    """A song analysed up front and played against the clock (audibly when asked)."""

    def __init__(
        self, path: Path, config: AudioConfig, *, loop: bool = False, audible: bool = False
    ) -> None:
        features = AudioAnalyzer(config).analyze(path)
        super().__init__(features, loop=loop, name=f"file {path.name}")
        self.path = path
        self._config = config
        self._audible = audible
        self._player: FileAudioSource | None = None

    def start(self) -> None:
        if self._audible:
            self._player = FileAudioSource(
                self.path,
                sample_rate=self._config.sample_rate,
                block_size=self._config.block_size,
                realtime=True,
                audible=True,
                loop=self.loop,
            )
            self._player.start()
        super().start()

    def stop(self) -> None:
        if self._player is not None:
            self._player.stop()
            self._player = None


class LiveMusic:
    """Live capture with streaming analysis on its own thread."""

    def __init__(self, device: str | int | None, config: AudioConfig) -> None:
        resolve_input_device(device)  # an unknown device fails now, before the model loads
        self._source = LiveAudioSource(
            device=device,
            sample_rate=config.sample_rate,
            block_size=config.block_size,
            channels=config.channels,
        )
        self._analyzer = StreamingAnalyzer(config, config.sample_rate)
        self._block_seconds = config.block_size / config.sample_rate
        self._beats_shown = 0
        # (time.monotonic(), seconds of audio analysed) after the latest block: maps audio time
        # to wall time for the beat grid
        self._pushed: tuple[float, float] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0
        self.description = f"live input {device if device is not None else '(default)'}"

    @property
    def can_look_ahead(self) -> bool:
        return False

    def start(self) -> None:
        self._source.start()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._analyse, name="hamba-analysis", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._source.stop()

    def clock(self) -> float:
        return time.monotonic() - self._start

    def finished(self) -> bool:
        return False

    def state_at(self, index: int, time_s: float) -> MusicState:
        latest = self._analyzer.latest()
        # the analysis runs at its own pace: a beat that fell since the last frame shown is a beat
        beat = latest.beat_count > self._beats_shown
        self._beats_shown = latest.beat_count
        return dataclasses.replace(latest, frame=index, time=time_s, beat=beat)

    def _analyse(self) -> None:
        # the capture callback only fills a ring buffer; analysis happens here, off the audio thread
        while not self._stop.is_set():
            block = self._source.read()
            if block.size == 0:
                self._stop.wait(0.25 * self._block_seconds)
                continue
            self._analyzer.push(block)
            self._pushed = (time.monotonic(), self._analyzer.time)

    def beat_grid(self) -> BeatGrid | None:
        grid, pushed = self._analyzer.beat_grid(), self._pushed
        if grid is None or pushed is None:
            return None
        period, next_beat = grid
        wall, audio_time = pushed
        # the newest sample analysed was captured about when its block was pushed
        return BeatGrid(period, wall - (audio_time - next_beat))

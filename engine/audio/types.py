"""Frozen containers for music features: whole songs (offline) and single frames (live)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

PITCH_CLASSES: tuple[str, ...] = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def _readonly(array: npt.NDArray[np.generic]) -> None:
    array.setflags(write=False)


@dataclass(frozen=True, eq=False)
class MusicState:
    """The music at one video frame: what the renderer needs, live or offline.

    ``beat`` is true on the frame a beat falls in; ``beat_phase`` runs 0..1 from one beat to the
    next; ``beat_count`` counts beats since the start; ``chroma`` is 12 values in [0, 1], C to B.
    ``bar_phase`` runs 0..1 through the bar and ``downbeat`` is true on the frame a bar starts,
    where the beat source knows the bar (Ableton Link, a MIDI clock with start or song
    position); audio analysis does not, and leaves ``bar_phase`` None.
    """

    frame: int
    time: float
    energy: float
    onset: float
    beat: bool
    beat_phase: float
    beat_count: int
    tempo: float
    chroma: FloatArray
    low: float = 0.0
    mid: float = 0.0
    high: float = 0.0
    bar_phase: float | None = None
    downbeat: bool = False

    def __post_init__(self) -> None:
        chroma = np.ascontiguousarray(self.chroma, dtype=np.float32)
        if chroma.shape != (12,):
            raise ValueError(f"chroma must have 12 values, got shape {chroma.shape}")
        _readonly(chroma)
        object.__setattr__(self, "chroma", chroma)


@dataclass(frozen=True, eq=False)
class AudioFeatures:
    """A whole song's features, aligned to video frames at ``fps``.

    Arrays are read-only. ``energy``, ``onset`` and the band energies are normalised to [0, 1];
    ``chroma_cq`` is ``(12, num_frames)`` with each column's maximum at 1 (0 in silence);
    ``beat_frames`` are the video-frame indices beats fall in, ascending; ``beat_times`` are the
    beats in seconds as the tracker found them, finer than a frame (empty when unknown).
    """

    path: str
    duration: float
    fps: float
    sample_rate: int
    tempo: float
    beat_frames: IntArray
    onset: FloatArray
    energy: FloatArray
    chroma_cq: FloatArray
    low: FloatArray
    mid: FloatArray
    high: FloatArray
    beat_times: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    num_frames: int = field(init=False)

    def __post_init__(self) -> None:
        n = int(self.energy.shape[0])
        for name in ("onset", "energy", "low", "mid", "high"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            if arr.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
            _readonly(arr)
            object.__setattr__(self, name, arr)
        chroma = np.ascontiguousarray(self.chroma_cq, dtype=np.float32)
        if chroma.shape != (12, n):
            raise ValueError(f"chroma_cq must have shape (12, {n}), got {chroma.shape}")
        _readonly(chroma)
        beats = np.ascontiguousarray(self.beat_frames, dtype=np.int64)
        _readonly(beats)
        times = np.ascontiguousarray(self.beat_times, dtype=np.float64)
        if times.ndim != 1:
            raise ValueError(f"beat_times must be one-dimensional, got shape {times.shape}")
        _readonly(times)
        object.__setattr__(self, "beat_times", times)
        object.__setattr__(self, "chroma_cq", chroma)
        object.__setattr__(self, "beat_frames", beats)
        object.__setattr__(self, "num_frames", n)
        object.__setattr__(self, "_beat_set", frozenset(int(b) for b in beats))

    def _check(self, frame: int) -> int:
        if not 0 <= frame < self.num_frames:
            raise IndexError(f"frame {frame} outside 0..{self.num_frames - 1}")
        return frame

    def get_energy_at_frame(self, frame: int) -> float:
        """Energy in [0, 1] at a video frame."""
        return float(self.energy[self._check(frame)])

    def is_beat_frame(self, frame: int) -> bool:
        """Whether a beat falls in this video frame."""
        return self._check(frame) in self._beat_set  # type: ignore[attr-defined]

    def get_chroma_at_frame(self, frame: int) -> FloatArray:
        """The 12 pitch-class weights (C..B) at a video frame."""
        return self.chroma_cq[:, self._check(frame)]

    def beat_count_at_frame(self, frame: int) -> int:
        """How many beats have fallen up to and including this frame."""
        return int(np.searchsorted(self.beat_frames, self._check(frame), side="right"))

    def beat_phase_at_frame(self, frame: int) -> float:
        """Position between the surrounding beats, 0 on a beat rising towards 1 at the next.

        Before the first beat and after the last one the phase continues at the song's tempo.
        """
        self._check(frame)
        beats = self.beat_frames
        period = self.fps * 60.0 / self.tempo if self.tempo > 0 else 0.0
        if beats.size == 0 or period <= 0:
            return 0.0
        k = int(np.searchsorted(beats, frame, side="right"))
        if 0 < k < beats.size:
            start, end = float(beats[k - 1]), float(beats[k])
        elif k == 0:
            end = float(beats[0])
            start = end - period * np.ceil((end - frame) / period + 1e-9)
        else:
            start = float(beats[-1]) + period * np.floor((frame - beats[-1]) / period)
            end = start + period
        span = max(end - start, 1e-9)
        return float(np.clip((frame - start) / span, 0.0, 1.0 - 1e-6))

    def state_at_frame(self, frame: int) -> MusicState:
        """The frame's features as a ``MusicState``, the form live analysis produces."""
        self._check(frame)
        return MusicState(
            frame=frame,
            time=frame / self.fps,
            energy=float(self.energy[frame]),
            onset=float(self.onset[frame]),
            beat=self.is_beat_frame(frame),
            beat_phase=self.beat_phase_at_frame(frame),
            beat_count=self.beat_count_at_frame(frame),
            tempo=self.tempo,
            chroma=self.chroma_cq[:, frame],
            low=float(self.low[frame]),
            mid=float(self.mid[frame]),
            high=float(self.high[frame]),
        )

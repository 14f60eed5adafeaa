"""Synthetic music features built directly from arrays (no audio analysis involved)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.audio.types import AudioFeatures

FPS = 24.0
# 120 BPM at 24 fps: a beat every 12 frames
BEAT_PERIOD = 12


def beat_grid(num_frames: int, period: int = BEAT_PERIOD, first: int = 0) -> npt.NDArray[np.int64]:
    """Beat frames every ``period`` frames from ``first``."""
    return np.arange(first, num_frames, period, dtype=np.int64)


def one_hot_chroma(pitch_classes: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """A ``(12, n)`` chromagram with only the given pitch class (per frame) sounding."""
    classes = np.asarray(pitch_classes, dtype=np.int64)
    chroma = np.zeros((12, classes.size), dtype=np.float32)
    chroma[classes, np.arange(classes.size)] = 1.0
    return chroma


def make_features(
    num_frames: int = 96,
    *,
    beats: npt.ArrayLike | None = None,
    energy: npt.ArrayLike | None = None,
    chroma: npt.ArrayLike | None = None,
    seed: int = 0,
) -> AudioFeatures:
    """Features of ``num_frames`` frames at 24 fps and 120 BPM.

    Defaults: a beat every 12 frames from frame 0, a random energy in [0, 1] and a random
    chromagram (each column's maximum at 1), both drawn from ``seed``.
    """
    rng = np.random.default_rng(seed)
    if energy is None:
        energy = rng.random(num_frames)
    if chroma is None:
        raw = rng.random((12, num_frames))
        chroma = raw / raw.max(axis=0, keepdims=True)
    zeros = np.zeros(num_frames, dtype=np.float32)
    return AudioFeatures(
        path="synthetic",
        duration=num_frames / FPS,
        fps=FPS,
        sample_rate=22050,
        tempo=60.0 * FPS / BEAT_PERIOD,
        beat_frames=beat_grid(num_frames) if beats is None else np.asarray(beats),
        onset=zeros,
        energy=np.asarray(energy, dtype=np.float32),
        chroma_cq=np.asarray(chroma, dtype=np.float32),
        low=zeros,
        mid=zeros,
        high=zeros,
    )

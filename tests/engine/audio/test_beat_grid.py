"""Beat data for the sync layer: the streaming tracker's grid (what a Link leader publishes for
live input), the offline analysis' tracked beat times, MusicState's bar fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.audio.analyzer import AudioAnalyzer
from engine.audio.streaming import StreamingAnalyzer
from engine.audio.types import AudioFeatures, MusicState
from engine.config import AudioConfig
from tests.engine.audio.signals import click_track, write_audio


def test_the_grid_is_none_before_a_lock_then_on_the_clicks() -> None:
    sr, offset = 22050, 0.1
    y, _ = click_track(120, 12.0, sr, offset=offset)
    analyzer = StreamingAnalyzer(AudioConfig(), sr)
    assert analyzer.beat_grid() is None
    for start in range(0, y.size, 512):
        analyzer.push(y[start : start + 512])
    grid = analyzer.beat_grid()
    assert grid is not None
    period, next_beat = grid
    assert 60.0 / period == pytest.approx(120.0, abs=1.0)
    assert next_beat >= analyzer.time - period  # a beat still to come (or just fired)
    error = (next_beat - offset + period / 2) % period - period / 2
    assert abs(error) < 0.05, error


def test_music_state_bar_fields_default_for_sources_that_do_not_know_the_bar() -> None:
    state = MusicState(
        frame=0,
        time=0.0,
        energy=0.0,
        onset=0.0,
        beat=False,
        beat_phase=0.0,
        beat_count=0,
        tempo=120.0,
        chroma=np.zeros(12, np.float32),
    )
    assert state.bar_phase is None
    assert state.downbeat is False


def test_the_analysis_keeps_the_tracked_beat_times_and_caches_them(tmp_path: Path) -> None:
    sr, offset = 22050, 0.25
    y, clicks = click_track(120, 8.0, sr, offset=offset)
    path = write_audio(tmp_path / "clicks.wav", y, sr)
    analyzer = AudioAnalyzer(AudioConfig(cache_dir=tmp_path / "cache"))
    features = analyzer.analyze(path)
    times = features.beat_times
    assert times.size >= 12
    assert not times.flags.writeable
    # each tracked beat near a click (finer than a 24 fps frame), frames agree with times
    nearest = np.abs(times[:, None] - clicks[None, :]).min(axis=1)
    assert nearest.max() < 0.035
    np.testing.assert_array_equal(
        np.unique(np.floor(times * features.fps + 1e-9).astype(np.int64)), features.beat_frames
    )
    cached = analyzer.analyze(path)
    np.testing.assert_array_equal(cached.beat_times, times)


def test_features_made_without_beat_times_have_none() -> None:
    n = 4
    features = AudioFeatures(
        path="x",
        duration=1.0,
        fps=4.0,
        sample_rate=22050,
        tempo=120.0,
        beat_frames=np.array([0, 2]),
        onset=np.zeros(n, np.float32),
        energy=np.zeros(n, np.float32),
        chroma_cq=np.zeros((12, n), np.float32),
        low=np.zeros(n, np.float32),
        mid=np.zeros(n, np.float32),
        high=np.zeros(n, np.float32),
    )
    assert features.beat_times.size == 0

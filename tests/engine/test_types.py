"""Feature containers: frozen, validated, frame queries."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine.audio.types import AudioFeatures, MusicState
from engine.frame import Frame


def make_features(n: int = 48, beats: tuple[int, ...] = (0, 12, 24, 36)) -> AudioFeatures:
    ramp = np.linspace(0, 1, n, dtype=np.float32)
    chroma = np.zeros((12, n), dtype=np.float32)
    chroma[7] = 1.0
    return AudioFeatures(
        path="synthetic",
        duration=n / 24,
        fps=24.0,
        sample_rate=22050,
        tempo=120.0,
        beat_frames=np.array(beats),
        onset=ramp,
        energy=ramp,
        chroma_cq=chroma,
        low=ramp,
        mid=ramp,
        high=ramp,
    )


def test_queries() -> None:
    f = make_features()
    assert f.num_frames == 48
    assert f.is_beat_frame(12)
    assert not f.is_beat_frame(13)
    assert f.get_energy_at_frame(47) == pytest.approx(1.0)
    assert int(np.argmax(f.get_chroma_at_frame(5))) == 7
    assert f.beat_phase_at_frame(12) == 0.0
    assert f.beat_phase_at_frame(18) == pytest.approx(0.5)
    assert f.beat_count_at_frame(12) == 2
    # after the last beat the phase continues at the tempo (12 frames per beat)
    assert f.beat_phase_at_frame(42) == pytest.approx(0.5)


def test_frozen_and_readonly() -> None:
    f = make_features()
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.tempo = 90.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        f.energy[0] = 0.5


def test_out_of_range_frame() -> None:
    with pytest.raises(IndexError, match="48"):
        make_features().get_energy_at_frame(48)


def test_shape_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="chroma_cq"):
        AudioFeatures(
            path="x",
            duration=1,
            fps=24,
            sample_rate=22050,
            tempo=0.0,
            beat_frames=np.array([], dtype=np.int64),
            onset=np.zeros(3, np.float32),
            energy=np.zeros(3, np.float32),
            chroma_cq=np.zeros((12, 4), np.float32),
            low=np.zeros(3, np.float32),
            mid=np.zeros(3, np.float32),
            high=np.zeros(3, np.float32),
        )


def test_state_at_frame_matches_queries() -> None:
    f = make_features()
    s = f.state_at_frame(24)
    assert isinstance(s, MusicState)
    assert s.beat
    assert s.beat_count == 3
    assert s.time == pytest.approx(1.0)
    with pytest.raises(ValueError, match="chroma must have 12 values"):
        MusicState(0, 0.0, 0, 0, False, 0, 0, 0, np.zeros(11, np.float32))


def test_frame_contract() -> None:
    img = np.zeros((8, 16, 4), dtype=np.uint8)
    frame = Frame(img, 3, 0.125)
    assert (frame.height, frame.width) == (8, 16)
    with pytest.raises(ValueError, match="HxWx4 uint8"):
        Frame(np.zeros((8, 16, 3), dtype=np.uint8), 0, 0.0)
    with pytest.raises(ValueError, match="C-contiguous"):
        Frame(np.zeros((16, 8, 4), dtype=np.uint8).transpose(1, 0, 2), 0, 0.0)

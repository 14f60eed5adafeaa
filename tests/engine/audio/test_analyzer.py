"""Offline analysis on synthesised signals with known tempo, beats, pitch classes and loudness."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from engine.audio.analyzer import AudioAnalyzer
from engine.audio.types import PITCH_CLASSES, AudioFeatures
from engine.config import AudioConfig
from tests.engine.audio.signals import PITCH_INDEX, chord, click_track, tones, write_audio


def _beat_errors(
    found: npt.NDArray[np.float64], truth: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Distance of each found beat to the nearest true one, and of each true beat to the nearest found."""
    to_truth = np.abs(found[:, None] - truth[None, :]).min(axis=1)
    to_found = np.abs(truth[:, None] - found[None, :]).min(axis=1)
    return to_truth, to_found


def _assert_all_finite(features: AudioFeatures) -> None:
    for name in ("onset", "energy", "low", "mid", "high", "chroma_cq"):
        values = getattr(features, name)
        assert np.isfinite(values).all(), name
        assert values.min() >= 0.0, name
        assert values.max() <= 1.0, name
    assert math.isfinite(features.tempo)


@pytest.mark.parametrize("bpm", [90, 120, 140])
def test_click_track_tempo_within_3_percent_and_beats_within_70_ms(
    librosa_warm: None, bpm: int
) -> None:
    # 100 fps: frames of 10 ms, so the frame a beat falls in pins its time down
    analyzer = AudioAnalyzer(AudioConfig(cache=False, fps=100))
    y, truth = click_track(bpm, 12.0, 22050)

    features = analyzer.analyze_samples(y, 22050)

    assert features.tempo == pytest.approx(bpm, rel=0.03)
    found = features.beat_frames / features.fps
    to_truth, to_found = _beat_errors(found, truth)
    assert to_truth.max() <= 0.07, f"beats off the clicks: {found}"
    # the tracker may trim a weak first or last beat; every beat in between is found
    assert (to_found[1:-1] <= 0.07).all(), (
        f"clicks without a beat: {truth[1:-1][to_found[1:-1] > 0.07]}"
    )


@pytest.mark.parametrize("bpm", [90, 140])
def test_beats_at_video_rate_fall_in_the_click_frames(analyzer: AudioAnalyzer, bpm: int) -> None:
    y, truth = click_track(bpm, 10.0, 22050)

    features = analyzer.analyze_samples(y, 22050)

    click_frames = np.floor(truth * features.fps).astype(int)
    for frame in features.beat_frames:
        assert np.abs(click_frames - frame).min() <= 1, frame
    assert features.is_beat_frame(int(features.beat_frames[3]))
    assert features.beat_phase_at_frame(int(features.beat_frames[3])) == 0.0


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_files_at_any_rate_and_layout_give_the_tempo(
    analyzer: AudioAnalyzer, tmp_path: Path, rate: int, channels: int
) -> None:
    y, _ = click_track(120, 8.0, rate)
    data = y if channels == 1 else np.stack([y, 0.5 * y], axis=1)
    path = write_audio(tmp_path / "click.wav", data, rate)

    features = analyzer.analyze(path)

    assert features.tempo == pytest.approx(120, rel=0.03)
    assert features.sample_rate == 22050
    assert features.duration == pytest.approx(8.0, abs=1e-3)
    assert features.num_frames == 8 * 24
    assert features.path == str(path)


@pytest.mark.parametrize(
    ("name", "notes", "expected"),
    [
        ("A4 alone", [69], {"A"}),
        ("C major", [60, 64, 67], {"C", "E", "G"}),
        ("A minor", [57, 60, 64], {"A", "C", "E"}),
        ("F# major", [66, 70, 73], {"F#", "A#", "C#"}),
        ("D7 low", [50, 54, 57, 60], {"D", "F#", "A", "C"}),
    ],
)
def test_chroma_peaks_at_the_chord_pitch_classes(
    analyzer: AudioAnalyzer, name: str, notes: list[int], expected: set[str]
) -> None:
    features = analyzer.analyze_samples(chord(notes, 2.0, 22050), 22050)

    # skip the edges, where the constant-Q windows reach into the padding
    chroma = features.chroma_cq[:, 6:-6]
    np.testing.assert_allclose(chroma.max(axis=0), 1.0, atol=1e-6)
    mean = chroma.mean(axis=1)
    top = {PITCH_CLASSES[i] for i in np.argsort(mean)[::-1][: len(expected)]}
    assert top == expected, f"{name}: {dict(zip(PITCH_CLASSES, np.round(mean, 2), strict=True))}"
    others = [mean[i] for i in range(12) if PITCH_CLASSES[i] not in expected]
    assert max(others) < 0.6 * min(mean[PITCH_INDEX[p]] for p in expected)


def test_silence_gives_zeros_no_beats_no_nan(analyzer: AudioAnalyzer, tmp_path: Path) -> None:
    path = write_audio(tmp_path / "silence.wav", np.zeros(3 * 22050, dtype=np.float32), 22050)

    features = analyzer.analyze(path)

    _assert_all_finite(features)
    assert features.tempo == 0.0
    assert features.beat_frames.size == 0
    for name in ("onset", "energy", "low", "mid", "high", "chroma_cq"):
        assert not getattr(features, name).any(), name
    assert features.num_frames == 72
    assert features.beat_phase_at_frame(10) == 0.0


def test_energy_and_chroma_follow_the_video_frames(analyzer: AudioAnalyzer) -> None:
    sr = 22050
    # 1 s of silence, then 1 s of A4, then 1 s of silence
    y = np.concatenate([np.zeros(sr), tones([440.0], 1.0, sr), np.zeros(sr)]).astype(np.float32)

    features = analyzer.analyze_samples(y, sr)

    assert features.num_frames == 72
    energy = features.energy
    # frame i covers [i/24, (i+1)/24): frames well inside each second show its loudness
    assert energy[:22].max() < 0.01
    assert energy[26:46].min() > 0.9
    assert energy[50:].max() < 0.01
    assert not features.chroma_cq[:, :22].any()
    assert int(np.argmax(features.chroma_cq[:, 36])) == PITCH_INDEX["A"]
    assert features.get_energy_at_frame(36) == pytest.approx(float(energy[36]))
    np.testing.assert_array_equal(features.get_chroma_at_frame(36), features.chroma_cq[:, 36])


@pytest.mark.parametrize(("freq", "band"), [(100.0, "low"), (1000.0, "mid"), (6000.0, "high")])
def test_band_energies_split_at_the_edges(analyzer: AudioAnalyzer, freq: float, band: str) -> None:
    # a quiet tone in every band, a loud one in the band under test, in the second half
    sr = 22050
    quiet = tones([100.0, 1000.0, 6000.0], 2.0, sr, amplitude=0.02)
    loud = np.concatenate([np.zeros(sr), tones([freq], 1.0, sr, amplitude=0.5)])
    features = analyzer.analyze_samples((quiet + loud).astype(np.float32), sr)

    for name in ("low", "mid", "high"):
        values = getattr(features, name)
        first, second = values[4:20].mean(), values[28:44].mean()
        if name == band:
            assert second > 0.9, name
            assert first < 0.1, name
        else:
            assert abs(second - first) < 0.05, name


def test_features_stay_in_range_on_a_groove(analyzer: AudioAnalyzer, demo_wav: Path) -> None:
    features = analyzer.analyze(demo_wav)

    _assert_all_finite(features)
    assert features.tempo == pytest.approx(120, rel=0.03)
    for name in ("onset", "energy", "low", "mid", "high"):
        assert getattr(features, name).max() == pytest.approx(1.0), name
    phases = [features.beat_phase_at_frame(i) for i in range(features.num_frames)]
    assert min(phases) >= 0.0
    assert max(phases) < 1.0
    counts = [features.beat_count_at_frame(i) for i in range(features.num_frames)]
    assert counts == sorted(counts)
    assert counts[-1] == features.beat_frames.size

"""The streaming analyzer: frame timing, online normalisation, tempo, beats, chroma, and
agreement with the offline analyzer on the same file."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from engine.audio.analyzer import AudioAnalyzer
from engine.audio.live import FileAudioSource
from engine.audio.streaming import StreamingAnalyzer
from engine.audio.types import PITCH_CLASSES, MusicState
from engine.config import AudioConfig
from tests.engine.audio.signals import PITCH_INDEX, chord, click_track, tones, write_audio

CONFIG = AudioConfig()


def _stream(
    samples: npt.NDArray[np.float32], sr: int, block: int = 512, config: AudioConfig = CONFIG
) -> list[MusicState]:
    analyzer = StreamingAnalyzer(config, sr)
    states: list[MusicState] = []
    for start in range(0, samples.size, block):
        states += analyzer.push(samples[start : start + block])
    return states


def _beat_frames(states: list[MusicState]) -> npt.NDArray[np.int64]:
    return np.array([s.frame for s in states if s.beat], dtype=np.int64)


def _assert_valid(states: list[MusicState]) -> None:
    for s in states:
        for name in ("energy", "onset", "beat_phase", "low", "mid", "high"):
            value = getattr(s, name)
            assert math.isfinite(value), (s.frame, name, value)
            assert 0.0 <= value <= 1.0, (s.frame, name, value)
        assert np.isfinite(s.chroma).all()
        assert s.chroma.min() >= 0.0
        assert s.chroma.max() <= 1.0
        assert math.isfinite(s.tempo)
        assert s.tempo >= 0.0


def test_one_state_per_video_frame_in_order_without_look_ahead() -> None:
    sr = 22050
    analyzer = StreamingAnalyzer(CONFIG, sr)
    y, _ = click_track(120, 3.0, sr)
    frames: list[MusicState] = []
    for start in range(0, y.size, 700):
        frames += analyzer.push(y[start : start + 700])
        # only frames whose audio has fully arrived come out
        assert len(frames) == math.floor(analyzer.time * CONFIG.fps + 1e-9)
        if frames:
            assert (frames[-1].frame + 1) / CONFIG.fps <= analyzer.time + 1e-9
    assert [s.frame for s in frames] == list(range(len(frames)))
    assert [s.time for s in frames] == pytest.approx([i / CONFIG.fps for i in range(len(frames))])
    assert analyzer.latest() is frames[-1]


@pytest.mark.parametrize("blocks", [[1], [100, 37], [512], [4096], [3000, 1, 64]])
def test_block_sizes_do_not_change_the_result(blocks: list[int]) -> None:
    sr = 22050
    y, _ = click_track(140, 5.0, sr)
    reference = _stream(y, sr, block=512)
    analyzer = StreamingAnalyzer(CONFIG, sr)
    states: list[MusicState] = []
    start, i = 0, 0
    while start < y.size:
        size = blocks[i % len(blocks)]
        states += analyzer.push(y[start : start + size])
        start, i = start + size, i + 1

    assert len(states) == len(reference)
    for got, want in zip(states, reference, strict=True):
        assert (got.frame, got.beat, got.beat_count) == (want.frame, want.beat, want.beat_count)
        assert got.energy == pytest.approx(want.energy, abs=1e-6)
        assert got.tempo == pytest.approx(want.tempo, abs=1e-9)
        np.testing.assert_allclose(got.chroma, want.chroma, atol=1e-6)


def test_latest_is_silent_before_audio_and_reset_starts_over() -> None:
    analyzer = StreamingAnalyzer(CONFIG, 22050)
    first = analyzer.latest()
    assert (first.frame, first.energy, first.beat, first.tempo) == (0, 0.0, False, 0.0)
    assert not first.chroma.any()

    y, _ = click_track(120, 4.0, 22050)
    analyzer.push(y)
    assert analyzer.latest().frame > 0

    analyzer.reset()
    assert analyzer.time == 0.0
    assert analyzer.latest().frame == 0
    again = analyzer.push(y[:4410])
    assert again[0].frame == 0


def test_silence_gives_zeros_and_no_beats() -> None:
    states = _stream(np.zeros(5 * 22050, dtype=np.float32), 22050)

    _assert_valid(states)
    assert len(states) == 119
    assert all(s.energy == 0.0 and s.onset == 0.0 and not s.beat for s in states)
    assert all(not s.chroma.any() and s.tempo == 0.0 for s in states)


def test_non_finite_input_does_not_leak_nan() -> None:
    y = tones([440.0], 2.0, 22050)
    y[1000:1100] = np.nan
    y[5000] = np.inf

    _assert_valid(_stream(y, 22050))


@pytest.mark.parametrize("bpm", [90, 120, 140])
@pytest.mark.parametrize("sr", [22050, 44100, 48000])
def test_click_tempo_and_beat_spacing(bpm: int, sr: int) -> None:
    y, truth = click_track(bpm, 12.0, sr)

    states = _stream(y, sr)

    _assert_valid(states)
    assert states[-1].tempo == pytest.approx(bpm, rel=0.03)
    beats = _beat_frames(states)
    # locked within the first 4 s, then a beat per click, each in or next to the click's frame
    late = truth[truth > 4.0]
    click_frames = np.floor(late * CONFIG.fps).astype(int)
    assert len(beats[beats >= 4.0 * CONFIG.fps]) >= len(late) - 1
    for frame in click_frames[:-1]:
        assert np.abs(beats - frame).min() <= 1, (frame, beats)
    counts = [s.beat_count for s in states]
    assert counts == sorted(counts)
    assert counts[-1] >= len(beats)


def test_beat_phase_rises_from_each_beat() -> None:
    y, _ = click_track(120, 8.0, 22050)

    states = _stream(y, 22050)

    beats = _beat_frames(states)
    for a, b in itertools.pairwise(beats):
        phases = [states[f].beat_phase for f in range(a, b)]
        assert phases[0] == 0.0
        assert all(p2 > p1 for p1, p2 in itertools.pairwise(phases))
        assert phases[-1] > 0.8


def test_energy_follows_loudness_online() -> None:
    sr = 22050
    y = np.concatenate([np.zeros(sr), tones([440.0], 2.0, sr, amplitude=0.5)]).astype(np.float32)

    states = _stream(y, sr)

    assert max(s.energy for s in states[:22]) == 0.0
    assert min(s.energy for s in states[30:70]) > 0.9
    assert int(np.argmax(states[50].chroma)) == PITCH_INDEX["A"]


@pytest.mark.parametrize("sr", [22050, 44100, 48000])
@pytest.mark.parametrize(
    ("notes", "expected"),
    [
        ([60, 64, 67], {"C", "E", "G"}),
        ([57, 60, 64], {"A", "C", "E"}),
        ([66, 70, 73], {"F#", "A#", "C#"}),
    ],
)
def test_chroma_peaks_at_the_chord_pitch_classes(
    sr: int, notes: list[int], expected: set[str]
) -> None:
    states = _stream(chord(notes, 2.0, sr), sr)

    mean = np.stack([s.chroma for s in states[6:]]).mean(axis=0)
    top = {PITCH_CLASSES[i] for i in np.argsort(mean)[::-1][:3]}
    assert top == expected, dict(zip(PITCH_CLASSES, np.round(mean, 2), strict=True))
    assert all(s.chroma.max() == pytest.approx(1.0) for s in states[6:])


@pytest.mark.parametrize(("freq", "band"), [(100.0, "low"), (1000.0, "mid"), (6000.0, "high")])
def test_band_energies_split_at_the_edges(freq: float, band: str) -> None:
    states = _stream(tones([freq], 2.0, 44100, amplitude=0.5), 44100)

    steady = states[6:]
    for name in ("low", "mid", "high"):
        level = min(getattr(s, name) for s in steady)
        if name == band:
            assert level > 0.9, name
        else:
            assert max(getattr(s, name) for s in steady) < 0.05, name


def _offline_and_streaming(path: Path) -> tuple[float, npt.NDArray[np.int64], list[MusicState]]:
    offline = AudioAnalyzer(AudioConfig(cache=False)).analyze(path)
    source = FileAudioSource(path, sample_rate=22050, block_size=512, realtime=False)
    analyzer = StreamingAnalyzer(CONFIG, source.sample_rate)
    states: list[MusicState] = []
    with source:
        for block in source.blocks():
            states += analyzer.push(block)
    return offline.tempo, offline.beat_frames, states


@pytest.mark.parametrize("song", ["click 130 BPM", "demo groove"])
def test_streaming_agrees_with_offline_on_the_same_file(
    librosa_warm: None, tmp_path: Path, demo_wav: Path, song: str
) -> None:
    if song == "demo groove":
        path = demo_wav
    else:
        y, _ = click_track(130, 10.0, 44100)
        path = write_audio(tmp_path / "click.flac", y, 44100)

    tempo, offline_beats, states = _offline_and_streaming(path)

    assert states[-1].tempo == pytest.approx(tempo, rel=0.05)
    streaming_beats = _beat_frames(states)
    assert streaming_beats.size >= 4
    locked_from = int(streaming_beats[0])
    # every streaming beat sits within 2 frames of an offline beat, and once the streaming
    # tracker has locked, every offline beat has a streaming beat within 2 frames
    for frame in streaming_beats:
        assert np.abs(offline_beats - frame).min() <= 2, (frame, offline_beats)
    for frame in offline_beats[(offline_beats > locked_from) & (offline_beats < len(states) - 2)]:
        assert np.abs(streaming_beats - frame).min() <= 2, (frame, streaming_beats)


def test_beats_stop_when_the_music_does() -> None:
    sr = 22050
    y, _ = click_track(120, 8.0, sr)
    states = _stream(np.concatenate([y, np.zeros(4 * sr, dtype=np.float32)]), sr)

    beats = _beat_frames(states)
    assert beats[beats < 8 * 24].size >= 8
    # the last click is at 7.75 s: a beat or two may still be predicted, then none
    assert not beats[beats > 9 * 24].size, beats
    assert all(s.energy == 0.0 for s in states[9 * 24 :])


def test_beat_count_counts_the_beat_frames_so_far() -> None:
    y, _ = click_track(140, 8.0, 22050)

    states = _stream(y, 22050)

    beats = 0
    for s in states:
        beats += s.beat
        assert s.beat_count == beats

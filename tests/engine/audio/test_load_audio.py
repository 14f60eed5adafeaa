"""Decoding: every supported format, channel count and sample rate; bad files raise AudioError."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from engine.audio.analyzer import AudioAnalyzer, load_audio
from engine.config import AudioConfig
from engine.errors import AudioError
from tests.engine.audio.signals import dominant_hz, tones, write_audio

FORMATS = ["wav", "flac", "ogg", "mp3", "m4a"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("channels", [1, 2])
def test_formats_decode_to_mono_at_the_asked_rate(tmp_path: Path, fmt: str, channels: int) -> None:
    tone = tones([440.0], 1.5, 44100)
    data = tone if channels == 1 else np.stack([tone, tone], axis=1)
    path = write_audio(tmp_path / f"tone.{fmt}", data, 44100)

    samples, sr = load_audio(path, 22050)

    assert sr == 22050
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    # lossy encoders pad a little (priming, last frame)
    assert abs(samples.size / sr - 1.5) < 0.06
    assert dominant_hz(samples, sr) == pytest.approx(440.0, abs=3.0)
    assert 0.2 < float(np.abs(samples).max()) < 0.45


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
def test_any_input_rate_is_resampled(tmp_path: Path, rate: int) -> None:
    path = write_audio(tmp_path / "tone.wav", tones([1000.0], 1.0, rate), rate)

    samples, sr = load_audio(path, 22050)

    assert sr == 22050
    assert samples.size == 22050
    assert dominant_hz(samples, sr) == pytest.approx(1000.0, abs=2.0)


def test_no_rate_keeps_the_native_one(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "tone.flac", tones([300.0], 0.5, 48000), 48000)

    samples, sr = load_audio(path)

    assert (sr, samples.size) == (48000, 24000)


def test_stereo_is_averaged(tmp_path: Path) -> None:
    left = tones([440.0], 1.0, 22050, amplitude=0.5)
    path = write_audio(tmp_path / "left.wav", np.stack([left, np.zeros_like(left)], axis=1), 22050)

    samples, _ = load_audio(path, 22050)

    np.testing.assert_allclose(samples, left / 2, atol=1e-4)


def _text_wav(tmp_path: Path) -> Path:
    path = tmp_path / "notes.wav"
    path.write_text("these are notes about a song, not audio\n" * 20)
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.wav"
    path.touch()
    return path


def _truncated(fmt: str) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        whole = write_audio(tmp_path / f"whole.{fmt}", tones([440.0], 2.0, 22050), 22050)
        cut = tmp_path / f"cut.{fmt}"
        data = whole.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        return cut

    return make


def _header_only(tmp_path: Path) -> Path:
    whole = write_audio(tmp_path / "whole.wav", tones([440.0], 1.0, 22050), 22050)
    cut = tmp_path / "header.wav"
    cut.write_bytes(whole.read_bytes()[:30])
    return cut


BAD_FILES: dict[str, Callable[[Path], Path]] = {
    "missing": lambda tmp_path: tmp_path / "no-such-song.wav",
    "folder": lambda tmp_path: tmp_path,
    "text named .wav": _text_wav,
    "empty": _empty,
    "header only": _header_only,
    "truncated wav": _truncated("wav"),
    "truncated flac": _truncated("flac"),
    "truncated ogg": _truncated("ogg"),
    "truncated mp3": _truncated("mp3"),
    "truncated m4a": _truncated("m4a"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_raise_audio_error_naming_the_file(tmp_path: Path, case: str) -> None:
    path = BAD_FILES[case](tmp_path)

    with pytest.raises(AudioError) as caught:
        load_audio(path, 22050)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("case", ["missing", "text named .wav", "truncated wav"])
def test_analyze_raises_the_same_errors(tmp_path: Path, case: str) -> None:
    path = BAD_FILES[case](tmp_path)
    analyzer = AudioAnalyzer(AudioConfig(cache=True, cache_dir=tmp_path / "cache"))

    with pytest.raises(AudioError, match=re.escape(path.name)):
        analyzer.analyze(path)
    assert not list((tmp_path / "cache").glob("*.npz"))

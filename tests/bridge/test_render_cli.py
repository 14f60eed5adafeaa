"""`hamba render`: a 6-second song to an mp4 with its audio, reproducibly."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from tests.bridge.cli_process import TINY_64, run_hamba
from tests.engine.audio.signals import chord, click_track, write_audio

FPS = 8
SECONDS = 6.0
# libx264 is not bit-reproducible on frames as small as 64x64 (measured); 128 is
SIZE = 128


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s: clicks at 120 BPM over a C major chord, 22.05 kHz stereo."""
    sr = 22050
    clicks, _ = click_track(120, SECONDS, sr, offset=0.0)
    mono = clicks + chord([60, 64, 67], SECONDS, sr)
    path = tmp_path_factory.mktemp("song") / "song.wav"
    return write_audio(path, np.stack([mono, mono], axis=1), sr)


def decode(path: Path) -> tuple[list[np.ndarray], float, float, float]:
    """Frames (rgb), video rate, video duration (s), audio duration (s)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        rate = float(video.average_rate or 0)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        audio = container.streams.audio[0]
        samples = sum(f.samples for f in container.decode(audio=0))
        audio_seconds = samples / audio.rate
    return frames, rate, len(frames) / rate, audio_seconds


def render(song: Path, out: Path) -> None:
    result = run_hamba(
        [
            "render",
            str(song),
            "-o",
            str(out),
            "--model",
            "tiny",
            "--width",
            str(SIZE),
            "--height",
            str(SIZE),
            "--fps",
            str(FPS),
            "--no-progress",
            "--set",
            f'audio.cache_dir="{out.parent / "cache"}"',
        ],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "untrained" in result.stderr  # the tiny model is labelled wherever a user meets it


def test_render_mp4_and_reproducible(song: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    render(song, first)
    frames, rate, video_s, audio_s = decode(first)
    assert len(frames) == int(SECONDS * FPS)
    assert frames[0].shape == (SIZE, SIZE, 3)
    assert rate == pytest.approx(FPS)
    assert audio_s == pytest.approx(SECONDS, abs=0.1)
    assert video_s == pytest.approx(SECONDS, abs=1 / FPS)
    assert not list(tmp_path.glob("*.partial.mp4"))
    # frames move with the music: not a still image
    assert np.mean([np.abs(a.astype(int) - b).mean() for a, b in itertools.pairwise(frames)]) > 0.5

    render(song, second)
    again, *_ = decode(second)
    assert len(again) == len(frames)
    for a, b in zip(frames, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_render_several_songs_into_a_folder(song: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.wav"
    data, sr = sf.read(song)
    sf.write(other, data[: sr * 2], sr)
    out = tmp_path / "renders"
    result = run_hamba(
        [
            "render",
            str(song),
            str(other),
            "-o",
            str(out),
            *TINY_64,
            "--fps",
            "4",
            "--no-progress",
        ],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["other.mp4", "song.mp4"]
    frames, *_ = decode(out / "other.mp4")
    assert len(frames) == 8

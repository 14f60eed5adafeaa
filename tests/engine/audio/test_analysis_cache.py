"""The disk cache: keyed by content and settings, survives new analyzers, heals corrupt entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.audio.analyzer import AudioAnalyzer, default_cache_dir
from engine.audio.types import AudioFeatures
from engine.config import AudioConfig
from tests.engine.audio.signals import click_track, write_audio


@pytest.fixture
def song(tmp_path: Path) -> Path:
    y, _ = click_track(120, 5.0, 22050)
    return write_audio(tmp_path / "song.wav", y, 22050)


def _config(cache_dir: Path, **changes: object) -> AudioConfig:
    return AudioConfig(cache=True, cache_dir=cache_dir, **changes)  # type: ignore[arg-type]


def _assert_same(a: AudioFeatures, b: AudioFeatures) -> None:
    assert (a.tempo, a.duration, a.fps, a.sample_rate, a.num_frames) == (
        b.tempo,
        b.duration,
        b.fps,
        b.sample_rate,
        b.num_frames,
    )
    for name in ("beat_frames", "onset", "energy", "chroma_cq", "low", "mid", "high"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_second_analysis_loads_from_the_cache(
    librosa_warm: None, tmp_path: Path, song: Path
) -> None:
    cache = tmp_path / "cache"
    first = AudioAnalyzer(_config(cache))
    computed = first.analyze(song)
    entries = list(cache.glob("*.npz"))
    assert (first.computed, first.cache_hits, len(entries)) == (1, 0, 1)
    stamp = entries[0].stat().st_mtime_ns

    # a fresh analyzer (as in a new process) finds the entry and does not compute
    second = AudioAnalyzer(_config(cache))
    loaded = second.analyze(song)

    assert (second.computed, second.cache_hits) == (0, 1)
    assert entries[0].stat().st_mtime_ns == stamp
    _assert_same(computed, loaded)


def test_same_content_elsewhere_hits_and_reports_its_own_path(
    librosa_warm: None, tmp_path: Path, song: Path
) -> None:
    analyzer = AudioAnalyzer(_config(tmp_path / "cache"))
    analyzer.analyze(song)
    copy = tmp_path / "copy of song.wav"
    copy.write_bytes(song.read_bytes())

    features = analyzer.analyze(copy)

    assert (analyzer.computed, analyzer.cache_hits) == (1, 1)
    assert features.path == str(copy)


def test_changed_content_or_settings_miss(librosa_warm: None, tmp_path: Path, song: Path) -> None:
    cache = tmp_path / "cache"
    AudioAnalyzer(_config(cache)).analyze(song)

    other_fps = AudioAnalyzer(_config(cache, fps=30.0))
    assert other_fps.analyze(song).fps == 30.0
    assert other_fps.computed == 1

    # settings the features do not depend on share the entry
    other_block = AudioAnalyzer(_config(cache, block_size=1024))
    other_block.analyze(song)
    assert other_block.cache_hits == 1

    y, _ = click_track(90, 5.0, 22050)
    write_audio(song, y, 22050)
    changed = AudioAnalyzer(_config(cache))
    assert changed.analyze(song).tempo == pytest.approx(90, rel=0.03)
    assert changed.computed == 1
    assert len(list(cache.glob("*.npz"))) == 3


@pytest.mark.parametrize("damage", [b"", b"not a zip file at all", b"PK\x03\x04broken"])
def test_corrupt_entry_is_recomputed_and_rewritten(
    librosa_warm: None, tmp_path: Path, song: Path, damage: bytes
) -> None:
    cache = tmp_path / "cache"
    reference = AudioAnalyzer(_config(cache)).analyze(song)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(damage)

    healing = AudioAnalyzer(_config(cache))
    _assert_same(reference, healing.analyze(song))
    assert healing.computed == 1

    after = AudioAnalyzer(_config(cache))
    _assert_same(reference, after.analyze(song))
    assert after.cache_hits == 1


def test_cache_off_never_writes(librosa_warm: None, tmp_path: Path, song: Path) -> None:
    analyzer = AudioAnalyzer(AudioConfig(cache=False, cache_dir=tmp_path / "cache"))
    analyzer.analyze(song)
    analyzer.analyze(song)

    assert analyzer.computed == 2
    assert not (tmp_path / "cache").exists()


def test_default_folder_is_the_user_cache(
    librosa_warm: None, tmp_path: Path, song: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    analyzer = AudioAnalyzer(AudioConfig(cache=True))

    analyzer.analyze(song)

    assert default_cache_dir() == tmp_path / "xdg" / "hambametal" / "features"
    assert len(list(default_cache_dir().glob("*.npz"))) == 1


def test_unwritable_cache_still_analyses(
    librosa_warm: None, tmp_path: Path, song: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a file, not a folder"
    blocker.write_text("x")
    analyzer = AudioAnalyzer(_config(blocker / "cache"))

    features = analyzer.analyze(song)

    assert features.tempo == pytest.approx(120, rel=0.03)
    assert "cannot write analysis cache" in caplog.text

"""Fixtures for the audio tests: a warmed-up librosa, analyzers, routing into the PulseAudio sink."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.audio.analyzer import AudioAnalyzer
from engine.audio.live import refresh_devices
from engine.config import AudioConfig
from tests.engine.audio.signals import click_track


@pytest.fixture(scope="session")
def librosa_warm() -> None:
    """Run one analysis so numba compiles librosa's beat tracker once (about 15 s), not per test."""
    y, _ = click_track(120, 4.0, 22050)
    AudioAnalyzer(AudioConfig(cache=False)).analyze_samples(y, 22050)


@pytest.fixture
def analyzer(librosa_warm: None) -> AudioAnalyzer:
    """An analyzer with the default settings and no disk cache."""
    return AudioAnalyzer(AudioConfig(cache=False))


@pytest.fixture
def pulse_env(pulse_sink: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Route this process's PulseAudio playback into the test sink and capture from its monitor."""
    monkeypatch.setenv("PULSE_SINK", pulse_sink)
    monkeypatch.setenv("PULSE_SOURCE", f"{pulse_sink}.monitor")
    # PortAudio lists devices once; an earlier test may have listed them before PulseAudio ran
    assert refresh_devices(), "an audio stream was left open by an earlier test"
    return pulse_sink


@pytest.fixture
def demo_wav() -> Path:
    """The bundled demo song."""
    path = Path(__file__).resolve().parents[3] / "assets" / "demo.wav"
    assert path.is_file(), f"{path} is missing: run scripts/make_demo_audio.py"
    return path

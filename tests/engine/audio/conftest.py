"""Fixtures for the audio tests: a warmed-up librosa, analyzers, a PulseAudio null sink."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
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


def _pulse_running() -> bool:
    probe = subprocess.run(["pactl", "info"], capture_output=True, timeout=10, check=False)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def pulse_sink() -> Iterator[str]:
    """The name of a fresh PulseAudio null sink; its monitor source hears what is played into it.

    Starts the PulseAudio daemon if none runs (and stops it afterwards). Skips only on a machine
    without PulseAudio and outside CI; in CI (env CI set) a missing PulseAudio is a failure.
    """
    missing = [tool for tool in ("pulseaudio", "pactl", "paplay") if shutil.which(tool) is None]
    if missing:
        reason = f"PulseAudio tools not installed: {', '.join(missing)} (apt-get install pulseaudio pulseaudio-utils)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the live-capture tests: {reason}")
        pytest.skip(reason)
    started = False
    if not _pulse_running():
        subprocess.run(
            ["pulseaudio", "-D", "--exit-idle-time=-1"], capture_output=True, timeout=30, check=True
        )
        started = True
        deadline = time.monotonic() + 15
        while not _pulse_running():
            if time.monotonic() > deadline:
                pytest.fail("the PulseAudio daemon did not come up within 15 s")
            time.sleep(0.1)
    name = f"hamba_test_{os.getpid()}"
    loaded = subprocess.run(
        ["pactl", "load-module", "module-null-sink", f"sink_name={name}"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    module = loaded.stdout.strip()
    try:
        yield name
    finally:
        subprocess.run(
            ["pactl", "unload-module", module], capture_output=True, timeout=10, check=False
        )
        if started:
            subprocess.run(["pulseaudio", "-k"], capture_output=True, timeout=10, check=False)


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

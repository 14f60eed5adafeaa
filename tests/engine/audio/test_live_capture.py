"""Live capture through a real PortAudio stream, fed by a PulseAudio null sink.

``paplay`` (a separate process) plays a file into the sink; ``LiveAudioSource`` records the
sink's monitor through PortAudio's ``pulse`` device, exactly as it would record a microphone.
When playback starts relative to the capture is unknown, so the checks are on what was heard
(level, pitch, tempo, beat spacing), not on when.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from engine.audio.live import FileAudioSource, LiveAudioSource, list_input_devices
from engine.audio.streaming import StreamingAnalyzer
from engine.audio.types import MusicState
from engine.config import AudioConfig
from tests.engine.audio.signals import click_track, dominant_hz, tones, write_audio

pytestmark = pytest.mark.pulse

RATE = 44100


def _capture_while(
    source: LiveAudioSource, player: subprocess.Popen[bytes] | None, seconds: float
) -> np.ndarray:
    """Read the source until the player exits (or ``seconds`` pass), plus half a second."""
    chunks = []
    deadline = time.monotonic() + seconds
    tail_until = None
    while True:
        now = time.monotonic()
        if tail_until is None and (
            now > deadline or (player is not None and player.poll() is not None)
        ):
            tail_until = now + 0.5
        if tail_until is not None and now > tail_until:
            break
        chunks.append(source.read())
        time.sleep(0.02)
    chunks.append(source.read())
    return np.concatenate(chunks)


def test_pulse_device_is_listed(pulse_env: str) -> None:
    names = [d.name for d in list_input_devices()]
    assert "pulse" in names, names


def test_captured_click_track_gives_120_bpm(pulse_env: str, tmp_path: Path) -> None:
    y, _ = click_track(120, 9.0, RATE)
    song = write_audio(tmp_path / "click120.wav", y, RATE)
    analyzer = StreamingAnalyzer(AudioConfig(), RATE)

    with LiveAudioSource("pulse", sample_rate=RATE, block_size=512) as source:
        player = subprocess.Popen(["paplay", str(song)], env=dict(os.environ))
        captured = _capture_while(source, player, seconds=30.0)
        assert player.wait(timeout=10) == 0
    states: list[MusicState] = []
    for start in range(0, captured.size, 512):
        states += analyzer.push(captured[start : start + 512])

    assert float(np.sqrt(np.mean(captured**2))) > 0.01, "the capture heard nothing"
    assert source.ring.dropped == 0
    assert states[-1].tempo == pytest.approx(120, rel=0.05)
    beats = np.array([s.frame for s in states if s.beat])
    assert beats.size >= 6, beats
    # one beat every half second: 12 frames at 24 fps
    assert np.median(np.diff(beats)) == pytest.approx(12, abs=1)


def test_audible_file_source_plays_into_the_sink(pulse_env: str, tmp_path: Path) -> None:
    song = write_audio(tmp_path / "tone.wav", tones([523.25], 2.0, RATE, amplitude=0.4), RATE)
    player = FileAudioSource(
        song, sample_rate=RATE, block_size=512, audible=True, output_device="pulse"
    )

    with LiveAudioSource("pulse", sample_rate=RATE, block_size=512) as capture, player:
        heard = _capture_while(capture, None, seconds=2.0)

    loud = heard[np.abs(heard) > 0.05]
    assert loud.size > RATE // 2, "the sink did not receive the file's audio"
    assert dominant_hz(heard, RATE) == pytest.approx(523.25, abs=3.0)

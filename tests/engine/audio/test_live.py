"""Audio sources without a sound server: the lock-free ring, file playback pacing, device lookup."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from engine.audio.analyzer import load_audio
from engine.audio.live import (
    AudioSource,
    FileAudioSource,
    LiveAudioSource,
    RingBuffer,
    list_input_devices,
    resolve_input_device,
)
from engine.config import AudioConfig
from engine.errors import AudioError
from tests.engine.audio.signals import tones, write_audio
from tests.requirements import require_portaudio


def _ramp(n: int, channels: int = 1, start: int = 0) -> np.ndarray:
    """Frames whose every channel holds its running index, so order is easy to check."""
    values = np.arange(start, start + n, dtype=np.float32)
    return np.repeat(values[:, None], channels, axis=1)


class TestRingBuffer:
    def test_wraps_around_in_order(self) -> None:
        ring = RingBuffer(capacity=10)
        out = []
        for i in range(0, 60, 7):
            ring.write(_ramp(7, start=i))
            out.append(ring.read(5))
            out.append(ring.read())
        np.testing.assert_array_equal(np.concatenate(out), np.arange(63, dtype=np.float32))
        assert ring.dropped == 0
        assert ring.available == 0

    def test_overrun_keeps_the_newest_and_counts_the_loss(self) -> None:
        ring = RingBuffer(capacity=8)
        ring.write(_ramp(5))
        ring.write(_ramp(6, start=5))

        assert ring.available == 8
        np.testing.assert_array_equal(ring.read(), np.arange(3, 11, dtype=np.float32))
        assert ring.dropped == 3

    def test_block_larger_than_the_ring(self) -> None:
        ring = RingBuffer(capacity=4)
        ring.write(_ramp(10))

        np.testing.assert_array_equal(ring.read(), np.arange(6, 10, dtype=np.float32))
        assert ring.dropped == 6

    def test_channels_are_averaged(self) -> None:
        ring = RingBuffer(capacity=16, channels=2)
        frames = np.stack([np.ones(6), np.zeros(6)], axis=1).astype(np.float32)
        ring.write(frames)

        np.testing.assert_array_equal(ring.read(), np.full(6, 0.5, dtype=np.float32))

    def test_bad_size(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            RingBuffer(capacity=0)


@pytest.fixture
def tone_file(tmp_path: Path) -> Path:
    # 1.3 s at 44.1 kHz: not a whole number of 512-sample blocks
    return write_audio(tmp_path / "tone.flac", tones([440.0, 660.0], 1.3, 44100), 44100)


def test_file_source_is_an_audio_source(tone_file: Path) -> None:
    source = FileAudioSource(tone_file, sample_rate=22050, realtime=False)
    assert isinstance(source, AudioSource)
    assert source.sample_rate == 22050
    assert source.duration == pytest.approx(1.3, abs=1e-3)


def test_file_source_yields_every_sample_in_order(tone_file: Path) -> None:
    expected, _ = load_audio(tone_file, 22050)
    with FileAudioSource(tone_file, sample_rate=22050, block_size=512, realtime=False) as source:
        blocks = list(source.blocks())

    assert all(b.size == 512 for b in blocks[:-1])
    assert 0 < blocks[-1].size <= 512
    np.testing.assert_array_equal(np.concatenate(blocks), expected)
    assert source.time == pytest.approx(expected.size / 22050)
    assert source.finished


def test_file_source_loops_seamlessly(tone_file: Path) -> None:
    expected, _ = load_audio(tone_file, 22050)
    source = FileAudioSource(
        tone_file, sample_rate=22050, block_size=1000, realtime=False, loop=True
    )
    blocks = source.blocks()
    got = np.concatenate([next(blocks) for _ in range(100)])

    assert got.size == 100_000 > 2 * expected.size
    reps = -(-got.size // expected.size)
    np.testing.assert_array_equal(got, np.tile(expected, reps)[: got.size])
    assert not source.finished


def test_realtime_file_source_never_runs_ahead_of_the_clock(tone_file: Path) -> None:
    expected, _ = load_audio(tone_file, 22050)
    source = FileAudioSource(tone_file, sample_rate=22050, block_size=512, realtime=True)
    got = []
    with source:
        began = time.monotonic()
        # right after the start only the first instant of the song is due, not the whole file
        assert source.available < expected.size // 2
        for block in source.blocks():
            got.append(block)
            # pacing is a correctness property: audio is never handed out before its time
            assert source.time <= time.monotonic() - began + 0.05

    np.testing.assert_array_equal(np.concatenate(got), expected)


def test_stopped_file_source_ends_its_blocks(tone_file: Path) -> None:
    source = FileAudioSource(tone_file, sample_rate=22050, block_size=256, realtime=False)
    blocks = source.blocks()
    next(blocks)
    source.stop()

    rest = list(blocks)
    assert source.finished
    assert sum(b.size for b in rest) + 256 == load_audio(tone_file, 22050)[0].size


def test_file_source_bad_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"missing\.ogg"):
        FileAudioSource(tmp_path / "missing.ogg")


def test_unknown_device_names_it_and_lists_inputs() -> None:
    require_portaudio()
    source = LiveAudioSource("no-such-microphone-xyz", sample_rate=44100)

    with pytest.raises(AudioError, match="no-such-microphone-xyz") as caught:
        source.start()
    inputs = list_input_devices()
    if inputs:
        assert inputs[0].name in str(caught.value)
    assert source.finished


def test_unknown_device_index() -> None:
    require_portaudio()
    with pytest.raises(AudioError, match="9999"):
        resolve_input_device(9999)


def test_live_source_rejects_bad_settings() -> None:
    with pytest.raises(AudioError, match="positive"):
        LiveAudioSource("pulse", sample_rate=0)


def test_live_source_from_config() -> None:
    source = LiveAudioSource.from_config(
        AudioConfig(device="pulse", block_size=256, channels=2), sample_rate=48000
    )

    assert (source.device, source.sample_rate, source.block_size, source.channels) == (
        "pulse",
        48000,
        256,
        2,
    )
    assert source.ring.channels == 2
    assert source.time == 0.0

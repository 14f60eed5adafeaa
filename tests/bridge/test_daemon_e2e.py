"""`hamba run` end to end: a real subprocess, real shm/NDI outputs, real OSC and OSCQuery."""

from __future__ import annotations

import os
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bridge.outputs.shm import ShmFrameReader, segment_name
from tests.bridge.daemon_harness import (
    DaemonUnderTest,
    FeedbackListener,
    collect_frames,
    start_daemon,
    wait_for,
)
from tests.engine.audio.signals import click_track as click_track_samples
from tests.engine.audio.signals import tones, write_audio

FPS = 10.0


@pytest.fixture(scope="module")
def click_track(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s of 120 BPM clicks over a drone, 22.05 kHz mono."""
    sr = 22050
    clicks, _ = click_track_samples(120, 8.0, sr, offset=0.0)
    drone = tones([220.0], 8.0, sr, amplitude=0.05)
    return write_audio(tmp_path_factory.mktemp("click") / "click120.wav", clicks + drone, sr)


@pytest.fixture
def feedback() -> Iterator[FeedbackListener]:
    listener = FeedbackListener()
    yield listener
    listener.close()


def check_pacing(frames: list[tuple[float, int, np.ndarray]], fps: float) -> None:
    indices = [index for _, index, _ in frames]
    assert indices == sorted(indices)
    assert len(set(indices)) == len(indices)
    span = frames[-1][0] - frames[0][0]
    rate = (indices[-1] - indices[0]) / span
    # the index follows the clock at the requested rate (frames may drop, never run ahead)
    assert 0.6 * fps < rate < 1.5 * fps, rate
    assert len(frames) >= 0.5 * fps * span  # most frames reach the reader


def exercise_controls(daemon: DaemonUnderTest, reader: ShmFrameReader) -> None:
    daemon.osc.send_message("/hamba/prompt", "molten glass cathedral")
    daemon.wait_value("/hamba/prompt", "molten glass cathedral")

    daemon.osc.send_message("/hamba/preset", "quality")
    daemon.wait_value("/hamba/preset", "quality")
    assert daemon.value("/hamba/blend") == pytest.approx(0.2)  # the preset set what it defines

    daemon.osc.send_message("/hamba/pause", 1)
    daemon.wait_value("/hamba/pause", True)
    collect_frames(reader, 0.5)  # let a frame rendered before the pause pass
    paused = collect_frames(reader, 1.5)
    assert len(paused) >= 5
    assert [i for _, i, _ in paused] == sorted(i for _, i, _ in paused)  # indices keep advancing
    for _, _, image in paused[1:]:
        np.testing.assert_array_equal(image, paused[0][2])  # the picture is held

    daemon.osc.send_message("/hamba/pause", 0)
    daemon.wait_value("/hamba/pause", False)
    resumed = collect_frames(reader, 1.5)
    assert any(not np.array_equal(image, paused[0][2]) for _, _, image in resumed)


def survive_bad_input(daemon: DaemonUnderTest, reader: ShmFrameReader) -> None:
    """Garbage and invalid messages leave the running daemon and its state alone."""
    blend = daemon.value("/hamba/blend")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        for junk in (
            b"",
            b"\x00" * 7,
            b"/hamba/blend\x00\x00\x00\x00,f\x00",
            b"#bundle\x00garbage",
        ):
            raw.sendto(junk, ("127.0.0.1", daemon.osc_port))
    daemon.osc.send_message("/hamba/blend", 7.5)  # out of range
    daemon.osc.send_message("/hamba/blend", "loud")  # wrong type
    daemon.osc.send_message("/hamba/nonsense", 1)  # unknown address
    after = collect_frames(reader, 1.0)
    assert daemon.proc.poll() is None
    assert len(after) >= 3
    assert daemon.value("/hamba/blend") == blend


def assert_clean_exit(daemon: DaemonUnderTest) -> None:
    assert daemon.stop() == 0, daemon.log.read_text()[-3000:]
    assert not (Path("/dev/shm") / segment_name(daemon.name)).exists()  # the segment is gone
    assert ShmFrameReader(daemon.name).read() is None
    assert "Traceback" not in daemon.log.read_text()


def test_run_file_end_to_end(
    click_track: Path, tmp_path: Path, ndi_loopback_env: dict[str, str], feedback: FeedbackListener
) -> None:
    name = f"e2e{uuid.uuid4().hex[:8]}"
    daemon = start_daemon(
        tmp_path,
        ["--audio", str(click_track), "--loop"],
        name=name,
        fps=FPS,
        feedback_port=feedback.port,
        extra_env=ndi_loopback_env,
        outputs=("shm", "ndi"),
    )
    try:
        reader = daemon.reader()
        first = reader.read()
        assert first is not None
        assert first.image.shape == (64, 64, 4)
        check_pacing(collect_frames(reader, 3.0), FPS)
        exercise_controls(daemon, reader)
        feedback.drain()
        for address in (
            "/hamba/audio/energy",
            "/hamba/audio/tempo",
            "/hamba/status/fps",
            "/hamba/status/frame",
            "/hamba/audio/beat",
            "/hamba/audio/chroma",
        ):
            assert feedback.messages.get(address), f"no {address} at the feedback target"
        tempo = feedback.messages["/hamba/audio/tempo"][-1][0]
        assert tempo == pytest.approx(120, rel=0.05)
        assert len(feedback.messages["/hamba/audio/chroma"][-1]) == 12
        survive_bad_input(daemon, reader)
        reader.close()
    finally:
        code = daemon.stop()
    assert code == 0
    assert_clean_exit(daemon)


@pytest.mark.pulse
def test_run_live_end_to_end(
    pulse_sink: str, click_track: Path, tmp_path: Path, feedback: FeedbackListener
) -> None:
    from tests.pulse import play_into_sink

    name = f"live{uuid.uuid4().hex[:8]}"
    daemon = start_daemon(
        tmp_path,
        ["--live", "pulse"],
        name=name,
        fps=FPS,
        feedback_port=feedback.port,
        extra_env={"PULSE_SOURCE": f"{pulse_sink}.monitor"},
    )
    player = None
    try:
        reader = daemon.reader()
        player = play_into_sink(pulse_sink, click_track, loops=6)
        check_pacing(collect_frames(reader, 3.0), FPS)
        exercise_controls(daemon, reader)

        def beats_heard() -> bool:
            feedback.drain()
            return len(feedback.messages.get("/hamba/audio/beat", [])) >= 3

        # the streaming tracker needs a few seconds of clicks before it locks on
        wait_for(beats_heard, 20.0, "three beats at the feedback target", daemon.proc, daemon.log)
        tempo = feedback.messages["/hamba/audio/tempo"][-1][0]
        assert tempo == pytest.approx(120, rel=0.05)
        energies = [m[0] for m in feedback.messages.get("/hamba/audio/energy", [])]
        assert max(energies) > 0.1
        reader.close()
    finally:
        if player is not None:
            os.killpg(player.pid, signal.SIGKILL)  # the shell and its paplay
            player.wait()
        code = daemon.stop()
    assert code == 0
    assert_clean_exit(daemon)

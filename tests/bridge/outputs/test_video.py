"""mp4 files written through PyAV and decoded back with PyAV: frames, timing, muxed audio."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from bridge.outputs import create_output
from bridge.outputs.video import VideoFileOutput, video_codec
from engine.errors import OutputError
from tests.bridge.outputs.patterns import psnr, smooth_frame

FPS = 24
RATE = 44100


def tone_file(path: Path, seconds: float, silent_head: float = 0.0) -> Path:
    """A 440 Hz tone (after ``silent_head`` seconds of silence), mono 16-bit wav."""
    t = np.arange(round(seconds * RATE)) / RATE
    signal = 0.5 * np.sin(2 * np.pi * 440 * t)
    signal[t < silent_head] = 0.0
    sf.write(path, signal, RATE, subtype="PCM_16")
    return path


def write(path: Path, frames: int, audio: Path | None, first: int = 0) -> VideoFileOutput:
    out = VideoFileOutput(path, audio_path=audio)
    with out:
        out.open(128, 96, FPS)
        for index in range(first, first + frames):
            out.publish(smooth_frame(128, 96, phase=index), index, index / FPS)
    return out


def decoded_audio(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        chunks = [f.to_ndarray().mean(axis=0) for f in container.decode(audio=0)]
    return np.concatenate(chunks)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@pytest.mark.parametrize("source_s", [2.0, 3.0, 1.0], ids=["equal", "trimmed", "padded"])
def test_mp4_has_the_frames_and_audio_as_long_as_the_video(tmp_path: Path, source_s: float) -> None:
    audio = tone_file(tmp_path / "tone.wav", source_s)
    path = tmp_path / "out.mp4"
    out = write(path, 2 * FPS, audio)
    assert out.codec == video_codec() == "libx264"  # this PyAV build has it
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert (video.width, video.height) == (128, 96)
        assert video.average_rate == FPS
        assert container.streams.audio[0].codec_context.name == "aac"
        frames = [f.to_ndarray(format="rgba") for f in container.decode(video=0)]
    assert len(frames) == 2 * FPS
    assert psnr(frames[10][..., :3], smooth_frame(128, 96, phase=10)[..., :3]) > 30.0
    samples = decoded_audio(path)
    # the audio runs as long as the video (2 s), within two frames
    assert abs(len(samples) / RATE - 2.0) < 2 / FPS
    head, tail = samples[: RATE // 2], samples[int(1.4 * RATE) : int(1.9 * RATE)]
    assert rms(head) > 0.2
    if source_s < 2.0:
        assert rms(tail) < 0.01  # padded with silence past the source's end
    else:
        assert rms(tail) > 0.2


def test_audio_starts_at_the_first_frames_time(tmp_path: Path) -> None:
    audio = tone_file(tmp_path / "late.wav", 3.0, silent_head=1.0)
    path = tmp_path / "late.mp4"
    write(path, FPS, audio, first=FPS)  # frames 24..47: the second second of the music
    samples = decoded_audio(path)
    assert abs(len(samples) / RATE - 1.0) < 2 / FPS
    assert rms(samples[2048 : RATE // 2]) > 0.2  # the tone, not the silent first second


def test_dropped_frames_keep_their_place_in_time(tmp_path: Path) -> None:
    path = tmp_path / "gaps.mp4"
    with VideoFileOutput(path) as out:
        out.open(64, 64, FPS)
        for index in (0, 1, 5, 5):  # a gap, then a repeated index
            out.publish(smooth_frame(64, 64, phase=index), index, index / FPS)
    with av.open(str(path)) as container:
        assert not container.streams.audio
        times = [f.time for f in container.decode(video=0)]
    assert times == pytest.approx([0, 1 / FPS, 5 / FPS, 6 / FPS])


def test_fractional_frame_rate(tmp_path: Path) -> None:
    path = tmp_path / "ntsc.mp4"
    with VideoFileOutput(path) as out:
        out.open(64, 48, 30000 / 1001)
        for index in range(10):
            out.publish(smooth_frame(64, 48), index, index / 29.97)
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == Fraction(30000, 1001)


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"no audio file at '.*missing\.wav'"):
        VideoFileOutput(tmp_path / "a.mp4", audio_path=tmp_path / "missing.wav")
    silent_video = tmp_path / "silent.mp4"
    write(silent_video, 2, None)
    out = VideoFileOutput(tmp_path / "b.mp4", audio_path=silent_video)
    with pytest.raises(OutputError, match=r"silent\.mp4' has no audio stream"):
        out.open(64, 64, FPS)
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("la la la")
    with pytest.raises(OutputError, match=r"cannot read the audio '.*notes\.txt'"):
        VideoFileOutput(tmp_path / "c.mp4", audio_path=not_audio).open(64, 64, FPS)
    with pytest.raises(OutputError, match="even frame size, got 63x64"):
        VideoFileOutput(tmp_path / "d.mp4").open(63, 64, FPS)


def test_spec_builds_a_file_output_with_the_audio(tmp_path: Path) -> None:
    audio = tone_file(tmp_path / "tone.wav", 1.0)
    out = create_output(f"file:{tmp_path / 'spec.mp4'}", audio_path=audio, crf=23)
    assert isinstance(out, VideoFileOutput)
    assert out.audio_path == audio
    assert out.crf == 23
    assert out.name == f"file:{tmp_path / 'spec.mp4'}"


def test_unwritable_file_is_named_at_open(tmp_path: Path) -> None:
    taken = tmp_path / "taken.mp4"
    taken.mkdir()  # a folder where the file should go
    with pytest.raises(OutputError, match=r"cannot write '.*taken\.mp4'"):
        VideoFileOutput(taken).open(64, 64, FPS)


def test_no_frames_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    with VideoFileOutput(path, audio_path=tone_file(tmp_path / "t.wav", 1.0)) as out:
        out.open(64, 64, FPS)
    assert not path.exists()

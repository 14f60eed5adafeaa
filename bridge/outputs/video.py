"""A video file (mp4: H.264, yuv420p) with the source audio muxed in as AAC, through PyAV.

H.264 comes from libx264 when this PyAV build has it, else the file falls back to MPEG-4 Part 2
(``codec`` tells which). Frames are placed by their index: the first frame published is at
0 s, a frame ``n`` indices later at ``n / fps`` s, so frames a real-time loop dropped leave the
previous frame on screen and the picture stays in step with the music. The audio starts at the
first frame's time in the source and is trimmed or padded with silence to the video's length.
The frame size must be even (yuv420p halves it for chroma). A run that publishes no frame
leaves no file.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from bridge.outputs.paths import writable_dir
from bridge.outputs.publisher import (
    RECORDING_QUEUE_FRAMES,
    PublisherBase,
    RGBAImage,
    import_native,
)
from engine.errors import OutputError

SUFFIXES = (".mp4", ".mov", ".mkv")
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
_INSTALL = "pip install av"


def _av() -> Any:
    return import_native("av", output="file", install=_INSTALL)


def video_codec() -> str:
    """The encoder file outputs use here: ``libx264`` if PyAV has it, else ``mpeg4``."""
    return "libx264" if "libx264" in _av().codecs_available else "mpeg4"


def probe() -> str:
    """Raise MissingBackendError without PyAV; else name the PyAV version and video encoder."""
    return f"PyAV {_av().__version__}, {video_codec()} + aac"


class _AudioTrack:
    """The source audio, decoded on demand and encoded to AAC in step with the video."""

    def __init__(self, source: Path, container: Any, output: str) -> None:
        av = _av()
        self.source = source
        try:
            self._input = av.open(str(source))
        except (OSError, av.FFmpegError) as exc:
            raise OutputError(
                f"output {output!r}: cannot read the audio {str(source)!r}: {exc}"
            ) from exc
        if not self._input.streams.audio:
            self._input.close()
            raise OutputError(f"output {output!r}: {str(source)!r} has no audio stream")
        in_stream = self._input.streams.audio[0]
        rate = in_stream.rate if in_stream.rate in _AAC_RATES else 48000
        layout = "mono" if in_stream.channels == 1 else "stereo"
        self.rate = rate
        self.stream = container.add_stream("aac", rate=rate, layout=layout)
        self._container = container
        self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        self._chunks = self._decode(in_stream)
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._skip = 0
        self._written = 0
        self._exhausted = False
        self._layout = layout

    def start_at(self, seconds: float) -> None:
        """Begin the track this far into the source (the first frame's audio time)."""
        self._skip = max(0, round(seconds * self.rate))

    def _decode(self, in_stream: Any) -> Iterator[np.ndarray]:
        for frame in self._input.decode(in_stream):
            for out in self._resampler.resample(frame):
                yield out.to_ndarray()
        for out in self._resampler.resample(None):
            yield out.to_ndarray()

    def _fill(self, samples: int) -> None:
        """Decode until ``samples`` are pending or the source ends."""
        while self._pending_n < samples and not self._exhausted:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._exhausted = True
                break
            if self._skip:
                cut = min(self._skip, chunk.shape[1])
                self._skip -= cut
                chunk = chunk[:, cut:]
            if chunk.shape[1]:
                self._pending.append(chunk)
                self._pending_n += chunk.shape[1]

    def _take(self, samples: int) -> np.ndarray:
        """``samples`` pending samples (zeros past the source's end)."""
        self._fill(samples)
        data = np.concatenate(self._pending, axis=1) if self._pending else None
        channels = self.stream.codec_context.channels
        if data is None or data.shape[1] < samples:
            have = 0 if data is None else data.shape[1]
            pad = np.zeros((channels, samples - have), dtype=np.float32)
            data = pad if data is None else np.concatenate([data, pad], axis=1)
        rest = data[:, samples:]
        self._pending = [rest] if rest.shape[1] else []
        self._pending_n = rest.shape[1]
        return np.ascontiguousarray(data[:, :samples], dtype=np.float32)

    def write_until(self, seconds: float, final: bool = False) -> None:
        """Encode the track up to ``seconds`` (whole encoder frames only, unless ``final``)."""
        av = _av()
        target = round(seconds * self.rate)
        size = self.stream.codec_context.frame_size or 1024
        while self._written < target:
            n = min(size, target - self._written)
            if n < size and not final:
                break
            frame = av.AudioFrame.from_ndarray(self._take(n), format="fltp", layout=self._layout)
            frame.sample_rate = self.rate
            frame.pts = self._written
            frame.time_base = Fraction(1, self.rate)
            self._container.mux(self.stream.encode(frame))
            self._written += n

    def finish(self, seconds: float) -> None:
        self.write_until(seconds, final=True)
        self._container.mux(self.stream.encode(None))

    def close(self) -> None:
        self._input.close()


class VideoFileOutput(PublisherBase):
    """Writes an mp4 (or .mov/.mkv) at ``path``; ``audio_path`` is muxed in when given."""

    # a recording keeps every frame through an encoder's slow moment
    queue_frames = RECORDING_QUEUE_FRAMES

    def __init__(
        self,
        path: str | Path,
        *,
        audio_path: str | Path | None = None,
        crf: int = 18,
        preset: str = "veryfast",
    ) -> None:
        self.path = Path(path).expanduser()
        super().__init__(f"file:{self.path}")
        if self.path.suffix.lower() not in SUFFIXES:
            raise OutputError(
                f"output {self.name!r}: the file must end in one of {', '.join(SUFFIXES)}"
            )
        self.audio_path = Path(audio_path).expanduser() if audio_path is not None else None
        if self.audio_path is not None and not self.audio_path.is_file():
            raise OutputError(f"output {self.name!r}: no audio file at {str(self.audio_path)!r}")
        writable_dir(self.path.parent, self.name)
        self.codec = video_codec()
        self.crf = crf
        self.preset = preset
        self.frames = 0
        self._container: Any = None
        self._stream: Any = None
        self._audio: _AudioTrack | None = None
        self._first_index = 0
        self._last_pts = -1

    def _open(self, width: int, height: int, fps: float) -> None:
        if width % 2 or height % 2:
            raise OutputError(
                f"output {self.name!r}: yuv420p needs an even frame size, got {width}x{height}"
            )
        av = _av()
        try:
            # PyAV creates the file only with the first packet: find out now if it can
            self.path.open("wb").close()
            container = av.open(str(self.path), mode="w")
        except (OSError, av.FFmpegError) as exc:
            raise OutputError(
                f"output {self.name!r}: cannot write {str(self.path)!r}: {exc}"
            ) from exc
        rate = Fraction(fps).limit_denominator(1001)
        stream = container.add_stream(self.codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = 1 / rate
        if self.codec == "libx264":
            stream.options = {"crf": str(self.crf), "preset": self.preset}
        else:
            stream.bit_rate = int(width * height * fps * 0.3)
        try:
            self._audio = (
                _AudioTrack(self.audio_path, container, self.name) if self.audio_path else None
            )
        except BaseException:
            container.close()
            raise
        self._container, self._stream = container, stream
        self.frames = 0
        self._last_pts = -1

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        av = _av()
        if self.frames == 0:
            self._first_index = index
            if self._audio is not None:
                self._audio.start_at(time)
        # frames keep their place in time; a repeated or earlier index takes the next slot
        pts = max(index - self._first_index, self._last_pts + 1)
        video = av.VideoFrame.from_ndarray(frame, format="rgba")
        video.pts = pts
        self._container.mux(self._stream.encode(video))
        self._last_pts = pts
        self.frames += 1
        if self._audio is not None:
            self._audio.write_until((pts + 1) / self.fps)

    def _close(self) -> None:
        container, self._container = self._container, None
        audio, self._audio = self._audio, None
        try:
            self._container_flush(container, audio)
        finally:
            if audio is not None:
                audio.close()
            container.close()
            if self.frames == 0:
                self.path.unlink(missing_ok=True)  # no frames, no (empty, unplayable) file

    def _container_flush(self, container: Any, audio: _AudioTrack | None) -> None:
        container.mux(self._stream.encode(None))
        if audio is not None:
            audio.finish((self._last_pts + 1) / self.fps)


def build(
    target: str | None,
    *,
    name: str,
    audio_path: str | Path | None = None,
    crf: int = 18,
    preset: str = "veryfast",
) -> VideoFileOutput:
    """Registry factory for the ``file:PATH.mp4`` spec."""
    if target is None:
        raise OutputError("output 'file' needs a path: file:PATH.mp4")
    return VideoFileOutput(target, audio_path=audio_path, crf=crf, preset=preset)

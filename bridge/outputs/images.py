"""A PNG sequence: one RGBA file per frame, ``frame_000000.png`` ... named by frame index.

Files are named by the frame's index (so a gap in the numbers is a frame the real-time loop
dropped) and appear whole: each is written under a temporary name, then renamed. zlib level 1
by default: on 1024x1024 diffusion-like frames it encodes 3x faster than ffmpeg's default
for files about 2.5% larger (PNG is lossless either way).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bridge.outputs.paths import writable_dir
from bridge.outputs.publisher import (
    RECORDING_QUEUE_FRAMES,
    PublisherBase,
    RGBAImage,
    import_native,
)
from engine.errors import OutputError

FILE_PATTERN = "frame_{index:06d}.png"


class PngSequenceOutput(PublisherBase):
    """Writes ``directory/frame_<index>.png`` for every frame (PNG encoded by PyAV).

    ``compression_level`` is zlib's, 0 (fastest, largest) to 9.
    """

    # a recording keeps every frame through an encoder's slow moment
    queue_frames = RECORDING_QUEUE_FRAMES

    def __init__(self, directory: str | Path, *, compression_level: int = 1) -> None:
        self.directory = Path(directory).expanduser()
        super().__init__(f"png:{self.directory}")
        if not 0 <= compression_level <= 9:
            raise OutputError(
                f"output {self.name!r}: compression_level must be 0..9, got {compression_level}"
            )
        self.compression_level = compression_level
        writable_dir(self.directory, self.name)
        self._av: Any = import_native("av", output="png", install="pip install av")
        self._codec: Any = None
        self.files = 0

    def path_for(self, index: int) -> Path:
        """The file frame ``index`` goes to."""
        return self.directory / FILE_PATTERN.format(index=index)

    def _open(self, width: int, height: int, fps: float) -> None:
        codec = self._av.CodecContext.create("png", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "rgba"
        codec.options = {"compression_level": str(self.compression_level)}
        codec.open()
        self._codec = codec
        self.files = 0

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        packets = self._codec.encode(self._av.VideoFrame.from_ndarray(frame, format="rgba"))
        path = self.path_for(index)
        partial = path.with_name(path.name + ".part")
        try:
            with open(partial, "wb") as fh:
                for packet in packets:
                    fh.write(bytes(packet))
            os.replace(partial, path)
        except OSError as exc:
            raise OutputError(f"output {self.name!r}: cannot write {str(path)!r}: {exc}") from exc
        self.files += 1

    def _close(self) -> None:
        self._codec = None


def build(
    target: str | None,
    *,
    name: str,
    audio_path: str | Path | None = None,
    compression_level: int = 1,
) -> PngSequenceOutput:
    """Registry factory for the ``png:DIR`` spec."""
    if target is None:
        raise OutputError("output 'png' needs a folder: png:DIR")
    return PngSequenceOutput(target, compression_level=compression_level)

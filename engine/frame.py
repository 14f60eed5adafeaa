"""The value that leaves the engine: one RGBA frame with its index and audio time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RGBAImage = npt.NDArray[np.uint8]


@dataclass(frozen=True, eq=False)
class Frame:
    """``image`` is ``H x W x 4`` RGBA ``uint8``, C-contiguous; ``time`` is the audio time (s)."""

    image: RGBAImage
    index: int
    time: float

    def __post_init__(self) -> None:
        img = self.image
        if img.ndim != 3 or img.shape[2] != 4 or img.dtype != np.uint8:
            raise ValueError(f"frame must be HxWx4 uint8, got {img.shape} {img.dtype}")
        if not img.flags.c_contiguous:
            raise ValueError("frame must be C-contiguous")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

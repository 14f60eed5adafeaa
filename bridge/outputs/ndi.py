"""An NDI source (cyndilib), seen by TouchDesigner's NDI In TOP, Resolume, OBS as ``HOST (name)``.

The sender is not clocked (the engine paces frames itself) and sends asynchronously: NDI
compresses a frame while the next one renders. ``pixel_format`` picks what goes on the wire:
``"rgba"`` (default; alpha kept, NDI converts internally), ``"bgra"``, or ``"uyvy"`` (4:2:2,
no alpha; converted here, once per frame, with BT.709 limited-range coefficients: the NDI 6
receiver decodes UYVY as BT.709 at every size, measured on 320x240 and 1280x720).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from bridge.outputs.publisher import PublisherBase, RGBAImage, import_native
from engine.errors import OutputError

PIXEL_FORMATS = ("rgba", "bgra", "uyvy")
# an extra: cyndilib has no sdist and no wheel for macOS before 13, so it cannot be a dependency
_INSTALL = (
    "pip install 'hambametal[ndi]'; cyndilib bundles the NDI runtime, with wheels for "
    "Linux x86_64/aarch64, macOS 13+ and Windows"
)

# BT.709 luma weights
_KR, _KB = 0.2126, 0.0722


def _cyndilib() -> Any:
    return import_native("cyndilib", output="ndi", install=_INSTALL)


def probe() -> str:
    """Raise MissingBackendError when cyndilib cannot load; else name the NDI runtime."""
    return f"cyndilib, {_cyndilib().get_ndi_version()}"


def _uyvy_matrix() -> np.ndarray:
    """RGB (0..255) -> limited-range Y, Cb, Cr (BT.709) as the rows of a 3x3 matrix."""
    kr, kb = _KR, _KB
    kg = 1.0 - kr - kb
    y = np.array([kr, kg, kb]) * (219 / 255)
    cb = np.array([-kr, -kg, 1 - kb]) / (2 * (1 - kb)) * (224 / 255)
    cr = np.array([1 - kr, -kg, -kb]) / (2 * (1 - kr)) * (224 / 255)
    return np.stack([y, cb, cr])


# 16.16 fixed point: integer arithmetic is ~10x faster than float matmuls here; chroma rows
# are halved because they apply to the sum of a pixel pair
_FIX = 1 << 16
_Y_FIX, _CB_FIX, _CR_FIX = (
    [round(float(c)) for c in row]
    for row in (_uyvy_matrix() * np.array([[_FIX], [_FIX / 2], [_FIX / 2]]))
)
_Y_OFFSET = (16 << 16) + (1 << 15)  # + 0.5 rounds
_C_OFFSET = (128 << 16) + (1 << 15)


def _weighted(r: np.ndarray, g: np.ndarray, b: np.ndarray, k: list[int], offset: int) -> np.ndarray:
    acc = r * k[0]
    acc += g * k[1]
    acc += b * k[2]
    acc += offset
    acc >>= 16
    return acc


def rgba_to_uyvy(frame: RGBAImage) -> np.ndarray:
    """Pack an RGBA frame (even width) as UYVY 4:2:2: ``H x W x 2`` uint8, chroma from pixel pairs.

    Values stay inside the limited range (Y 16..235, Cb/Cr 16..240) by construction.
    """
    height, width = frame.shape[:2]
    pairs = frame.reshape(height, width // 2, 2, 4)
    r, g, b = (pairs[..., c].astype(np.int32) for c in range(3))
    out = np.empty((height, width // 2, 4), dtype=np.uint8)
    luma = _weighted(r, g, b, _Y_FIX, _Y_OFFSET)
    out[..., 1], out[..., 3] = luma[..., 0], luma[..., 1]
    r2, g2, b2 = r[..., 0] + r[..., 1], g[..., 0] + g[..., 1], b[..., 0] + b[..., 1]
    out[..., 0] = _weighted(r2, g2, b2, _CB_FIX, _C_OFFSET)
    out[..., 2] = _weighted(r2, g2, b2, _CR_FIX, _C_OFFSET)
    return out.reshape(height, width, 2)


class NdiOutput(PublisherBase):
    """An NDI sender named ``name`` (receivers list it as ``HOST (name)``)."""

    def __init__(self, name: str = "hambaMetal", *, pixel_format: str = "rgba") -> None:
        super().__init__(f"ndi:{name}")
        if pixel_format not in PIXEL_FORMATS:
            raise OutputError(
                f"output {self.name!r}: pixel_format {pixel_format!r} is not one of {PIXEL_FORMATS}"
            )
        self.ndi_name = name
        self.pixel_format = pixel_format
        self._lib = _cyndilib()
        self._sender: Any = None
        self._bgra: np.ndarray | None = None

    @property
    def source_name(self) -> str | None:
        """The full source name receivers see, ``HOST (name)``, once open."""
        return str(self._sender.name) if self._sender is not None else None

    @property
    def connections(self) -> int:
        """How many receivers are connected right now (0 when closed)."""
        return int(self._sender.get_num_connections(0)) if self._sender is not None else 0

    def _open(self, width: int, height: int, fps: float) -> None:
        if self.pixel_format == "uyvy" and width % 2:
            raise OutputError(f"output {self.name!r}: UYVY needs an even width, got {width}")
        lib = self._lib
        video = lib.VideoSendFrame()
        video.set_resolution(width, height)
        video.set_frame_rate(Fraction(fps).limit_denominator(1001))
        video.set_fourcc(getattr(lib.FourCC, self.pixel_format.upper()))
        sender = lib.Sender(self.ndi_name, clock_video=False, clock_audio=False)
        sender.set_video_frame(video)  # cyndilib wants the frame before open()
        try:
            sender.open()
        except Exception as exc:
            raise OutputError(f"output {self.name!r}: NDI sender did not open: {exc}") from exc
        self._sender = sender
        if self.pixel_format == "bgra":
            self._bgra = np.empty((height, width, 4), dtype=np.uint8)

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        if self.pixel_format == "uyvy":
            data = rgba_to_uyvy(frame)
        elif self._bgra is not None:
            data = np.take(frame, (2, 1, 0, 3), axis=2, out=self._bgra)
        else:
            data = frame
        # cyndilib copies the 1-D buffer into its own before NDI reads it asynchronously
        self._sender.write_video_async(data.ravel())

    def _close(self) -> None:
        sender, self._sender = self._sender, None
        self._bgra = None
        if sender is not None:
            sender.close()


def build(
    target: str | None,
    *,
    name: str,
    audio_path: str | Path | None = None,
    pixel_format: str = "rgba",
) -> NdiOutput:
    """Registry factory for the ``ndi`` spec."""
    return NdiOutput(name, pixel_format=pixel_format)

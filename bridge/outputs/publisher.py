"""The contract every frame output keeps: the protocol, a base class and the frame rule.

Frame rule (:func:`validate_frame`), applied once per frame before it reaches an output:

- a frame is a numpy array ``H x W x 4`` (RGBA), ``H`` and ``W`` at least 1;
- ``uint8`` frames pass through untouched when C-contiguous, else they are copied once;
- floating-point frames (float16/32/64) must hold values in ``[0, 1]``; they are converted once
  to ``uint8`` as ``round(value * 255)``; NaN or infinite values, or values outside ``[0, 1]``,
  raise :class:`~engine.errors.OutputError` (a 0..255 float frame is a bug, not a brighter image);
- any other dtype (int, uint16, bool, ...) or shape raises :class:`~engine.errors.OutputError`.

Outputs themselves may ask for BGRA or UYVY; that conversion happens once, inside the output.
"""

from __future__ import annotations

import importlib
import sys
from abc import ABC, abstractmethod
from types import ModuleType, TracebackType
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from engine.errors import OutputError
from engine.lifecycle import ClosesOnExit

RGBAImage = npt.NDArray[np.uint8]

_C = TypeVar("_C", bound="ClosesOnExit")


# frames a recording (mp4, PNG) may keep waiting: a few seconds of an encoder's slow moment
RECORDING_QUEUE_FRAMES = 64


@runtime_checkable
class FramePublisher(Protocol):
    """Anything that takes RGBA frames and hands them to the outside world.

    ``name`` labels the output in logs, errors and statistics (e.g. ``"ndi:hambaMetal"``).
    ``open`` is called once before the first frame, ``close`` once at the end (it is
    idempotent); ``publish`` gets frames in order. Open, publish and close are called from one
    thread (outputs such as Spout hold a per-thread graphics context).

    Optionally, ``pump()`` does housekeeping that must run on the render loop's (main) thread
    rather than the output's own, e.g. Syphon's discovery run loop. It is called between
    frames, only while the output is open, and must return quickly (a millisecond or so).
    :class:`PublisherBase` provides a no-op; a publisher without the method is never pumped.

    Optionally, ``queue_frames`` (an int) asks the :class:`~bridge.outputs.group.OutputGroup`
    for a deeper queue than its default: a recording (mp4, PNG) would rather hold a few seconds
    of frames through an encoder's slow moment than lose one; live outputs keep the short queue
    (a late frame is worth less than the next one).
    """

    name: str

    def open(self, width: int, height: int, fps: float) -> None: ...

    def publish(self, frame: np.ndarray, index: int, time: float) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> FramePublisher: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class MissingBackendError(OutputError):
    """An output's native library cannot be imported here (names the output and the module)."""


def current_platform() -> str:
    """``sys.platform``, behind a function so that platform gating can be exercised in tests."""
    return sys.platform


def import_native(module: str, *, output: str, install: str) -> ModuleType:
    """Import an output's native module lazily; a typed error names what is missing and why."""
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:
        raise MissingBackendError(
            f"output {output!r} needs the Python module {module!r} ({install}), which cannot be "
            f"imported on {current_platform()}: {exc}"
        ) from exc


def validate_frame(frame: object) -> RGBAImage:
    """Check a frame against the frame rule (module docstring); return C-contiguous RGBA uint8.

    A valid C-contiguous ``uint8`` frame is returned as is (no copy).
    """
    if not isinstance(frame, np.ndarray):
        raise OutputError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 4 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise OutputError(f"frame must be H x W x 4 (RGBA), got shape {frame.shape}")
    if frame.dtype == np.uint8:
        if frame.flags.c_contiguous:
            return frame
        return np.ascontiguousarray(frame)
    if np.issubdtype(frame.dtype, np.floating):
        return _float_to_uint8(frame)
    raise OutputError(f"frame dtype must be uint8 or float in [0, 1], got {frame.dtype}")


def _float_to_uint8(frame: np.ndarray) -> RGBAImage:
    low, high = float(np.min(frame)), float(np.max(frame))
    # min/max propagate NaN, so one check catches NaN and inf
    if not (np.isfinite(low) and np.isfinite(high)):
        count = int(np.count_nonzero(~np.isfinite(frame)))
        raise OutputError(f"float frame holds {count} NaN or infinite values")
    if low < 0.0 or high > 1.0:
        raise OutputError(f"float frame values must lie in [0, 1], got [{low:.4g}, {high:.4g}]")
    scaled = np.multiply(frame, 255.0, dtype=np.float32)
    scaled += 0.5
    return np.ascontiguousarray(scaled, dtype=np.uint8)


class PublisherBase(ClosesOnExit, ABC):
    """Lifecycle shared by the outputs: state checks, the frame rule, size checks, idempotent close.

    Subclasses implement ``_open``, ``_publish`` (gets a validated frame of the opened size) and
    ``_close``.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._size: tuple[int, int] | None = None
        self._fps = 0.0

    @property
    def is_open(self) -> bool:
        return self._size is not None

    @property
    def width(self) -> int:
        return self._size[1] if self._size else 0

    @property
    def height(self) -> int:
        return self._size[0] if self._size else 0

    @property
    def fps(self) -> float:
        return self._fps

    def open(self, width: int, height: int, fps: float) -> None:
        """Prepare for frames of ``width x height`` at ``fps`` frames per second."""
        if self._size is not None:
            raise OutputError(f"output {self.name!r} is already open")
        if int(width) != width or int(height) != height or width < 1 or height < 1:
            raise OutputError(f"output {self.name!r}: frame size {width}x{height} is not valid")
        if not (fps > 0 and np.isfinite(fps)):
            raise OutputError(f"output {self.name!r}: fps must be positive, got {fps}")
        self._open(int(width), int(height), float(fps))
        self._size = (int(height), int(width))
        self._fps = float(fps)

    def publish(self, frame: np.ndarray, index: int, time: float) -> None:
        """Hand one frame (its index and audio time in seconds) to the output."""
        if self._size is None:
            raise OutputError(f"output {self.name!r} is not open")
        if index < 0:
            raise OutputError(f"output {self.name!r}: frame index must be >= 0, got {index}")
        image = validate_frame(frame)
        if image.shape[:2] != self._size:
            raise OutputError(
                f"output {self.name!r} was opened for {self.width}x{self.height}, "
                f"got a {image.shape[1]}x{image.shape[0]} frame"
            )
        self._publish(image, int(index), float(time))

    def close(self) -> None:
        """Release the output; calling it again does nothing."""
        if self._size is None:
            return
        try:
            self._close()
        finally:
            self._size = None

    def pump(self) -> None:
        """Main-thread housekeeping between frames (see :class:`FramePublisher`); none here."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    @abstractmethod
    def _open(self, width: int, height: int, fps: float) -> None: ...

    @abstractmethod
    def _publish(self, frame: RGBAImage, index: int, time: float) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...

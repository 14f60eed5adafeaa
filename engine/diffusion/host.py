"""Frames on their way to host memory: a ring of reusable host buffers and pending copies.

On CUDA a frame goes into a pinned (page-locked) slot of a :class:`HostRing` with an
asynchronous copy and an event recorded behind it: :meth:`HostTransfer.launch` returns at once
with :class:`PendingFrames`, whose :meth:`~PendingFrames.wait` waits on that one event (never a
device-wide synchronise) and hands out the slot itself, no further copy. Elsewhere the frame
already lives in host memory (cpu) or is copied plainly (mps).

A slot is reused only once nothing refers to its array any more (CPython's reference count:
every array, view or ``Frame`` that shares the slot holds a reference), so a frame an output
still queues, or one a paused engine still shows, is never overwritten; when every slot is
taken the ring grows, up to a bound, then falls back to an ordinary array.

Every transfer also carries a finiteness flag the model computed on the device before the
``uint8`` conversion: ``wait`` raises :class:`NonFiniteFrameError` for a frame that held NaN or
infinity, so such a frame can never reach an output.
"""

from __future__ import annotations

import logging
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import NamedTuple

import torch

from engine.errors import RenderError
from engine.frame import RGBAImage

log = logging.getLogger(__name__)

Frames = RGBAImage  # here a batch (B, H, W, 4), or one frame of it


class NonFiniteFrameError(RenderError):
    """The model produced NaN or infinite values for a frame; the frame is not published."""


class PendingFrames(ABC):
    """Frames ``(B, H, W, 4)`` RGBA ``uint8`` that are, or will soon be, in host memory.

    :meth:`wait` blocks until they are (once; later calls return the same array or raise the
    same error); :meth:`ready` says, without blocking, whether :meth:`wait` would return at once.
    """

    def __init__(self) -> None:
        self._frames: Frames | None = None
        self._images: list[Frames] = []
        self._error: BaseException | None = None

    @abstractmethod
    def ready(self) -> bool:
        """Whether the frames have arrived (``wait`` would not block)."""

    @abstractmethod
    def _collect(self) -> Frames:
        """Block until the frames are in host memory; raise if they are not valid."""

    def wait(self) -> Frames:
        """The frames, once they are in host memory (NonFiniteFrameError for NaN or inf)."""
        if self._error is not None:
            raise self._error
        if self._frames is None:
            try:
                self._frames = self._collect()
            except BaseException as exc:
                self._error = exc
                raise
            self._images = list(self._frames)
        return self._frames

    def image(self, index: int = -1) -> Frames:
        """One frame ``(H, W, 4)``: the same array object every time it is asked for."""
        self.wait()
        return self._images[index]


@dataclass(frozen=True, eq=False)
class PendingImage:
    """One frame ``(H, W, 4)`` of :class:`PendingFrames` (the last one by default)."""

    frames: PendingFrames
    index: int = -1

    def ready(self) -> bool:
        return self.frames.ready()

    def wait(self) -> Frames:
        """The frame (the same array object every time); NonFiniteFrameError for NaN or inf."""
        return self.frames.image(self.index)


class ReadyFrames(PendingFrames):
    """Frames already in host memory (``finite`` False: the model saw NaN or inf)."""

    def __init__(self, frames: Frames, *, finite: bool = True) -> None:
        super().__init__()
        self._ready = frames
        self._finite = finite

    def ready(self) -> bool:
        return True

    def _collect(self) -> Frames:
        if not self._finite:
            raise NonFiniteFrameError("the model produced NaN or infinite values: frame dropped")
        return self._ready


class HostSlot(NamedTuple):
    """A host buffer: the tensor, the numpy array sharing its memory, a one-element bool flag
    (pinned with it), and whether it is new (never handed out before: its content is garbage)."""

    tensor: torch.Tensor
    array: Frames
    flag: torch.Tensor
    fresh: bool


class HostRing:
    """Reusable host buffers for frames of one shape (pinned on CUDA).

    :meth:`acquire` returns a buffer that nothing else refers to: the next free slot, a new
    slot while fewer than ``max_slots`` exist, else (never blocking) a one-off array.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        pinned: bool = False,
        slots: int = 3,
        max_slots: int = 16,
    ) -> None:
        if slots < 1 or max_slots < slots:
            raise ValueError(f"host ring: need 1 <= slots ({slots}) <= max_slots ({max_slots})")
        self.shape = tuple(shape)
        self.pinned = pinned
        self.max_slots = max_slots
        self._tensors: list[torch.Tensor] = []
        self._arrays: list[Frames] = []
        self._flags: list[torch.Tensor] = []
        self._baseline: list[int] = []
        self._unused: set[int] = set()  # slots never handed out
        self._next = 0
        self.overflows = 0  # frames that found every slot taken
        for _ in range(slots):
            self._grow()

    @property
    def slots(self) -> int:
        return len(self._arrays)

    def free(self, slot: int) -> bool:
        """Whether nothing outside the ring refers to slot ``slot``'s array."""
        # the list and getrefcount's own argument are the references the ring itself holds
        return sys.getrefcount(self._arrays[slot]) <= self._baseline[slot]

    def acquire(self) -> HostSlot:
        """A buffer nothing else refers to."""
        count = len(self._arrays)
        for step in range(count):
            slot = (self._next + step) % count
            if self.free(slot):
                self._next = (slot + 1) % count
                fresh = slot in self._unused
                self._unused.discard(slot)
                return HostSlot(self._tensors[slot], self._arrays[slot], self._flags[slot], fresh)
        if count < self.max_slots:
            slot = self._grow()
            self._next = 0
            self._unused.discard(slot)
            return HostSlot(self._tensors[slot], self._arrays[slot], self._flags[slot], True)
        self.overflows += 1
        if self.overflows == 1:
            log.warning(
                "host ring: all %d frame buffers are still in use; frames now go through "
                "ordinary memory (slower copies)",
                count,
            )
        tensor = torch.empty(self.shape, dtype=torch.uint8)
        return HostSlot(tensor, tensor.numpy(), torch.empty(1, dtype=torch.bool), True)

    def _grow(self) -> int:
        tensor = torch.empty(self.shape, dtype=torch.uint8, pin_memory=self.pinned)
        self._tensors.append(tensor)
        self._arrays.append(tensor.numpy())
        self._flags.append(torch.ones(1, dtype=torch.bool, pin_memory=self.pinned))
        slot = len(self._arrays) - 1
        self._baseline.append(sys.getrefcount(self._arrays[slot]))
        self._unused.add(slot)
        return slot


class _CudaFrames(PendingFrames):
    """An asynchronous device-to-host copy: an event recorded behind it on the frame's stream."""

    def __init__(self, array: Frames, flag: torch.Tensor, event: torch.cuda.Event) -> None:
        super().__init__()
        self._array = array
        self._flag = flag
        self._event = event

    def ready(self) -> bool:
        return self._frames is not None or self._error is not None or bool(self._event.query())

    def _collect(self) -> Frames:
        self._event.synchronize()  # this copy only: the device may already run the next frame
        if not bool(self._flag[0]):
            raise NonFiniteFrameError("the model produced NaN or infinite values: frame dropped")
        return self._array


class HostTransfer:
    """Copies ``uint8`` frame tensors to host memory (a pinned ring on CUDA)."""

    def __init__(self, device: torch.device, *, slots: int = 3, max_slots: int = 16) -> None:
        self._device = device
        self._slots = slots
        self._max_slots = max_slots
        self._rings: dict[tuple[int, ...], HostRing] = {}

    @property
    def pinned(self) -> bool:
        return self._device.type == "cuda"

    def ring(self, shape: tuple[int, ...]) -> HostRing:
        """The ring of buffers for frames of ``shape`` (made on first use)."""
        ring = self._rings.get(shape)
        if ring is None:
            ring = HostRing(shape, pinned=self.pinned, slots=self._slots, max_slots=self._max_slots)
            self._rings[shape] = ring
        return ring

    def launch(
        self, frames: torch.Tensor, *, reused: bool, finite: torch.Tensor | None = None
    ) -> PendingFrames:
        """Start moving ``frames`` to host memory; ``finite`` is the model's 0-d bool flag.

        ``reused`` says ``frames`` is a buffer that will be overwritten (a CUDA graph's static
        output): on the cpu it is then copied into a ring slot instead of shared.
        """
        if frames.device.type == "cuda":
            tensor, array, flag, _ = self.ring(tuple(frames.shape)).acquire()
            tensor.copy_(frames, non_blocking=True)
            if finite is None:
                flag.fill_(True)
            else:
                flag.copy_(finite.reshape(1), non_blocking=True)
            done = torch.cuda.Event()
            done.record(torch.cuda.current_stream(frames.device))
            return _CudaFrames(array, flag, done)
        ok = True if finite is None else bool(finite)
        if frames.device.type == "cpu":
            if reused:
                tensor, array, _, _ = self.ring(tuple(frames.shape)).acquire()
                tensor.copy_(frames)
                return ReadyFrames(array, finite=ok)
            return ReadyFrames(frames.contiguous().numpy(), finite=ok)
        return ReadyFrames(frames.cpu().numpy(), finite=ok)

    def fetch(
        self, frames: torch.Tensor, *, reused: bool, finite: torch.Tensor | None = None
    ) -> Frames:
        """The frames as a C-contiguous numpy array (waits for the copy)."""
        return self.launch(frames, reused=reused, finite=finite).wait()

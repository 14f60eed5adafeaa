"""The one device-to-host copy of a frame.

On CUDA the frame goes into a pinned (page-locked) host buffer with an asynchronous copy and a
single event wait: the only host synchronisation in the frame. Elsewhere the tensor already
lives in host memory (cpu) or is copied plainly (mps).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch


class HostTransfer:
    """Copies ``uint8`` frame tensors to numpy arrays, reusing pinned buffers on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._pinned: dict[tuple[int, ...], torch.Tensor] = {}

    @property
    def pinned(self) -> bool:
        return self._device.type == "cuda"

    def fetch(self, frames: torch.Tensor, *, reused: bool) -> npt.NDArray[np.uint8]:
        """The frames as a C-contiguous numpy array that the caller owns.

        ``reused`` says ``frames`` is a buffer that will be overwritten (a CUDA graph's static
        output): a cpu tensor is then copied instead of shared.
        """
        if frames.device.type == "cpu":
            array = frames.contiguous().numpy()
            return array.copy() if reused else array
        if not self.pinned:
            return frames.cpu().numpy()
        shape = tuple(frames.shape)
        buffer = self._pinned.get(shape)
        if buffer is None:
            buffer = torch.empty(shape, dtype=frames.dtype, pin_memory=True)
            self._pinned[shape] = buffer
        buffer.copy_(frames, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(frames.device))
        done.synchronize()
        # the pinned buffer is reused by the next frame: hand out a copy
        return buffer.numpy().copy()

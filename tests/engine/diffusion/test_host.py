"""The host ring: a buffer anything still refers to is never handed out again; the
finiteness flag travels with the frames. (The pinned, asynchronous CUDA path is written against
torch's ``pin_memory``, ``copy_(non_blocking=True)`` and ``torch.cuda.Event``: it runs only where
a GPU is, see ``test_fast_path`` and ``benchmarks/bench_gpu.py``.)"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from engine.diffusion.host import HostRing, HostTransfer, NonFiniteFrameError, ReadyFrames
from tests.engine.diffusion.support import needs_cuda


def test_a_buffer_still_referred_to_is_never_reused() -> None:
    ring = HostRing((1, 4, 4, 4), slots=2, max_slots=4)
    first = ring.acquire().array
    second = ring.acquire().array
    assert first is not second
    view = first[0, :2]  # a view (a queued frame, a Frame) keeps its buffer taken
    del first
    third = ring.acquire().array
    # grown, not shared
    assert third is not view.base
    assert ring.slots == 3
    del view, second, third
    gc.collect()
    assert all(ring.free(slot) for slot in range(ring.slots))


def test_a_released_buffer_comes_back() -> None:
    ring = HostRing((2, 2), slots=2)
    a = ring.acquire().array
    address = a.ctypes.data
    del a
    seen = set()
    for _ in range(4):
        b = ring.acquire().array
        seen.add(b.ctypes.data)
        del b
    assert address in seen
    assert ring.slots == 2  # nothing held: the ring does not grow


def test_a_buffer_says_whether_it_was_handed_out_before() -> None:
    ring = HostRing((2, 2), slots=1)
    first = ring.acquire()
    assert first.fresh
    del first
    assert not ring.acquire().fresh  # the same buffer again: it holds the last frame


def test_a_full_ring_falls_back_to_fresh_memory() -> None:
    ring = HostRing((2, 2), slots=1, max_slots=2)
    held = [ring.acquire().array for _ in range(2)]
    extra = ring.acquire().array
    assert ring.overflows == 1
    assert all(extra.ctypes.data != h.ctypes.data for h in held)


def test_cpu_transfer_checks_the_finite_flag() -> None:
    transfer = HostTransfer(torch.device("cpu"))
    frames = torch.zeros(1, 2, 2, 4, dtype=torch.uint8)
    ok = transfer.launch(frames, reused=False, finite=torch.tensor(True))
    assert ok.ready()
    assert ok.wait().shape == (1, 2, 2, 4)
    bad = transfer.launch(frames, reused=True, finite=torch.tensor(False))
    with pytest.raises(NonFiniteFrameError):
        bad.wait()


def test_ready_frames_hand_out_the_same_image_objects() -> None:
    frames = np.zeros((3, 2, 2, 4), np.uint8)
    pending = ReadyFrames(frames)
    assert pending.image(1) is pending.image(1)
    assert pending.image() is pending.image(2)


@needs_cuda
def test_cuda_frames_reach_a_pinned_slot_through_their_own_event() -> None:
    """Written against torch's pinned memory, non-blocking copies and events; runs on a GPU."""
    device = torch.device("cuda")
    transfer = HostTransfer(device)
    frames = torch.randint(0, 256, (1, 64, 64, 4), dtype=torch.uint8, device=device)
    torch.cuda._sleep(200_000_000)  # keep the stream busy: the copy queues behind it
    pending = transfer.launch(
        frames, reused=False, finite=torch.ones((), dtype=torch.bool, device=device)
    )
    assert not pending.ready()  # launched, not waited for
    array = pending.wait()
    assert pending.ready()
    assert transfer.ring((1, 64, 64, 4)).pinned
    np.testing.assert_array_equal(array, frames.cpu().numpy())
    held = array
    second = transfer.launch(frames, reused=True).wait()
    assert second.ctypes.data != held.ctypes.data  # the held slot is not reused
    bad = transfer.launch(
        frames, reused=False, finite=torch.zeros((), dtype=torch.bool, device=device)
    )
    with pytest.raises(NonFiniteFrameError):
        bad.wait()

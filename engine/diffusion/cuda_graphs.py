"""CUDA graph capture of a fixed-shape tensor function (the per-frame step).

A frame's work is a few hundred small kernel launches; on a fast GPU launching them costs more
than running them. Captured once per input signature (shapes and dtypes), the whole step is
replayed with one launch. Inputs are copied into static buffers, outputs are static buffers
that the next replay overwrites: callers copy out what they keep.

CUDA only: :func:`cuda_graphs_usable` says whether capture can run on a device.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

GraphFn = Callable[..., tuple[torch.Tensor, ...]]
Signature = tuple[tuple[tuple[int, ...], torch.dtype] | None, ...]


def cuda_graphs_usable(device: torch.device) -> bool:
    """Capture needs a CUDA device; everywhere else the step runs eagerly."""
    return device.type == "cuda" and torch.cuda.is_available()


@dataclass
class _Captured:
    graph: Any  # torch.cuda.CUDAGraph
    inputs: list[torch.Tensor | None]
    outputs: tuple[torch.Tensor, ...]


class GraphRunner:
    """Runs ``fn(*tensors)`` through a CUDA graph captured per input signature.

    ``None`` inputs pass through as ``None`` (they are part of the signature). At most
    ``max_graphs`` graphs are kept (least recently used dropped); all share one memory pool.
    """

    def __init__(self, fn: GraphFn, device: torch.device, *, warmup: int = 2, max_graphs: int = 8):
        if not cuda_graphs_usable(device):
            raise RuntimeError(f"cuda graphs need a CUDA device, not {device}")
        self._fn = fn
        self._device = device
        self._warmup = warmup
        self._max_graphs = max_graphs
        self._graphs: OrderedDict[Signature, _Captured] = OrderedDict()
        self._pool = torch.cuda.graph_pool_handle()

    @property
    def captured(self) -> int:
        """How many signatures have a graph."""
        return len(self._graphs)

    def __call__(self, *inputs: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        key = _signature(inputs)
        with torch.cuda.device(self._device):
            entry = self._graphs.get(key)
            if entry is None:
                entry = self._capture(key, inputs)
            else:
                self._graphs.move_to_end(key)
                for static, value in zip(entry.inputs, inputs, strict=True):
                    if static is not None and value is not None:
                        static.copy_(value, non_blocking=True)
            entry.graph.replay()
        return entry.outputs

    def _capture(self, key: Signature, inputs: Sequence[torch.Tensor | None]) -> _Captured:
        static = [None if t is None else t.detach().clone() for t in inputs]
        # warm up on a side stream: lazy inits, cudnn/cublas autotuning and torch.compile's
        # first call must happen before capture, and off the capturing stream
        side = torch.cuda.Stream(self._device)
        side.wait_stream(torch.cuda.current_stream(self._device))
        with torch.cuda.stream(side):
            for _ in range(self._warmup):
                self._fn(*static)
        torch.cuda.current_stream(self._device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            outputs = self._fn(*static)
        entry = _Captured(graph, static, outputs)
        self._graphs[key] = entry
        while len(self._graphs) > self._max_graphs:
            self._graphs.popitem(last=False)
        log.info("captured a cuda graph for %s", key)
        return entry


def _signature(inputs: Sequence[torch.Tensor | None]) -> Signature:
    return tuple(None if t is None else (tuple(t.shape), t.dtype) for t in inputs)

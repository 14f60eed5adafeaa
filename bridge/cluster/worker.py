"""The Ray actor that renders: one per device, the model loaded once, chunks of any song.

This module does not import Ray: :class:`~bridge.cluster.pool.WorkerPool` wraps
:class:`RenderWorker` with ``ray.remote`` when a cluster render starts. Every call is
self-describing (the chunk, the song's features, the frames wanted), so any worker can serve
any piece, and a piece asked again renders the same frames: the worker replays its chunk from
the chunk's warm-up start when it is not already there.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bridge.cluster.plan import Chunk
from engine.audio.types import AudioFeatures
from engine.config import PipelineConfig
from engine.errors import HambaError, RenderError
from engine.frame import Frame
from engine.render import Conductor

Images = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class WorkerInfo:
    """Who a worker is and what it loaded (for the log and the benchmark)."""

    name: str
    host: str
    pid: int
    device: str
    model: str
    untrained: bool
    load_seconds: float


@dataclass(frozen=True)
class PieceReport:
    """What one call rendered: frames ``start..stop-1`` of ``song`` and the work it took.

    ``rendered`` counts every frame the model produced for it, warm-up included; ``seconds``
    is the time spent (so ``rendered / seconds`` is the worker's speed).
    """

    worker: str
    song: int
    start: int
    stop: int
    rendered: int
    seconds: float


class RenderWorker:
    """Holds one conductor (model loaded once) and renders pieces of chunks with it.

    A model that cannot load is not raised from ``__init__`` (Ray would only report a dead
    actor with the traceback as text): :meth:`ready` raises the engine's own error.
    """

    def __init__(self, name: str, config: PipelineConfig) -> None:
        began = time.perf_counter()
        self._name = name
        self._error: HambaError | None = None
        self._conductor: Conductor | None = None
        try:
            conductor = Conductor.from_config(config)
            conductor.stream.base.load_model()
            self._conductor = conductor
        except HambaError as exc:
            self._error = exc
        self._load_seconds = time.perf_counter() - began
        self._chunk: Chunk | None = None
        self._next = -1
        self._frames: Iterator[Frame] | None = None

    def ready(self) -> WorkerInfo:
        """This worker's description, once its model is loaded; its load error otherwise."""
        conductor = self._loaded()
        base = conductor.stream.base
        return WorkerInfo(
            name=self._name,
            host=socket.gethostname(),
            pid=os.getpid(),
            device=str(base.device),
            model=base.model_label,
            untrained=base.is_untrained,
            load_seconds=self._load_seconds,
        )

    def render_piece(
        self, chunk: Chunk, features: AudioFeatures, start: int, stop: int
    ) -> tuple[PieceReport, Images]:
        """Frames ``start..stop-1`` of the chunk, stacked ``(n, H, W, 4)`` RGBA ``uint8``."""
        conductor = self._loaded()
        if not chunk.start <= start < stop <= chunk.stop:
            raise RenderError(
                f"worker {self._name}: frames {start}..{stop - 1} are not in the chunk "
                f"{chunk.start}..{chunk.stop - 1} of song {chunk.song}"
            )
        began = time.perf_counter()
        counted = conductor.frames_rendered + conductor.frames_held
        if self._frames is None or self._chunk != chunk or self._next != start:
            # not where this chunk left off: replay it from its warm-up start
            self._frames = conductor.render_span(
                features, start, chunk.stop, warmup_from=chunk.warmup_from
            )
            self._chunk = chunk
        images = np.stack([next(self._frames).image for _ in range(stop - start)])
        self._next = stop
        if stop == chunk.stop:
            self._frames, self._chunk = None, None
        report = PieceReport(
            worker=self._name,
            song=chunk.song,
            start=start,
            stop=stop,
            rendered=conductor.frames_rendered + conductor.frames_held - counted,
            seconds=time.perf_counter() - began,
        )
        return report, images

    def _loaded(self) -> Conductor:
        if self._error is not None:
            raise self._error
        assert self._conductor is not None  # set whenever there is no error
        return self._conductor

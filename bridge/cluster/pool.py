"""The workers of a cluster render and the loop that feeds them chunks and writes their frames.

:class:`WorkerPool` starts one :class:`~bridge.cluster.worker.RenderWorker` actor per GPU of
the cluster (per CPU slot on a CPU-only cluster), each loading the model once, and keeps
them for any number of renders. :meth:`WorkerPool.render` cuts the songs into chunks
(:mod:`bridge.cluster.plan`), hands each idle worker the next chunk, and asks for it piece by
piece (about a second of video each), so frames leave the worker as they are made and the one
progress bar moves. The driver writes each song's frames in order as soon as they are next;
pieces that arrive early wait in Ray's object store (which spills to disk), not in the
driver's memory.

When a worker dies, the part of its chunk not yet delivered goes back to the front of the
queue for another worker, which replays the chunk from its own warm-up start, so the frames
are the ones the dead worker would have made. A piece whose data is lost after delivery (its
node died) is rendered again the same way. Each chunk is tried at most :data:`MAX_ATTEMPTS`
times; a render where every worker has died, or where no frame arrives for ``stall_seconds``,
stops with a :class:`~bridge.cluster.session.ClusterError`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from bridge.cluster.plan import Chunk, piece_frames, pieces, plan_chunks, warmup_frames
from bridge.cluster.progress import ClusterProgress
from bridge.cluster.session import ClusterError
from bridge.cluster.worker import PieceReport, RenderWorker, WorkerInfo
from engine.audio.types import AudioFeatures
from engine.config import PipelineConfig
from engine.errors import ConfigError, HambaError
from engine.frame import Frame

log = logging.getLogger(__name__)

# a chunk (and its retries) is tried at most this many times
MAX_ATTEMPTS = 4
# seconds to wait for the workers to load their model
READY_TIMEOUT = 900.0
# seconds without any frame from any worker before the render gives up
STALL_SECONDS = 1800.0
# how often a wait for workers says so (seconds)
_WAITING_NOTE = 30.0
# how often the loop wakes up to refresh the bar and check for a stall (seconds)
_TICK = 0.5


class FrameSink(Protocol):
    """Where one song's frames go, in order; committed when whole, aborted on failure."""

    def write(self, frames: Iterable[Frame]) -> None: ...

    def commit(self) -> object: ...

    def abort(self) -> None: ...


SinkFactory = Callable[[int], FrameSink]


def worker_slots(ray: ModuleType) -> tuple[int, dict[str, float], str]:
    """How many workers the cluster holds, the resources each takes, and their torch device."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus > 0:
        return gpus, {"num_gpus": 1}, "cuda"
    return int(resources.get("CPU", 0)), {"num_cpus": 1}, "cpu"


def task_error(exc: Exception, where: str) -> HambaError:
    """The engine's own error behind a Ray task error, else a ClusterError saying where."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, HambaError):
        return cause
    return ClusterError(f"{where}: {cause if cause is not None else exc}")


@dataclass
class _Worker:
    name: str
    handle: Any
    info: WorkerInfo
    chunk: Chunk | None = None
    waiting: deque[_Asked] = field(default_factory=deque)


@dataclass(frozen=True)
class _Asked:
    """One piece asked of a worker: its report, its images (separate objects), its frames."""

    report: Any
    images: Any
    chunk: Chunk
    start: int
    stop: int


@dataclass
class _Song:
    features: AudioFeatures
    ref: Any  # the features in the object store, shared by every chunk of the song
    sink: FrameSink | None = None
    written: int = 0
    done: bool = False
    # delivered pieces not yet written, by first frame: (images, stop, chunk)
    ready: dict[int, tuple[Any, int, Chunk]] = field(default_factory=dict)


class WorkerPool:
    """One render actor per device of the cluster, each with the model loaded once.

    ``workers`` caps how many (default: every GPU, or every CPU slot without GPUs). The
    constructor waits until the models are loaded (``ready_timeout`` seconds at most; the
    workers that made it are used). :meth:`close` ends the actors.
    """

    def __init__(
        self,
        ray: ModuleType,
        config: PipelineConfig,
        *,
        workers: int | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self.ray = ray
        self.config = config
        slots, resources, device = worker_slots(ray)
        count = slots if workers is None else min(workers, slots)
        if count < 1:
            raise ClusterError(
                f"the Ray cluster has no GPU and no CPU to render on ({ray.cluster_resources()})"
            )
        if workers is not None and workers > slots:
            log.warning("cluster: %d workers asked, the cluster holds %d", workers, slots)
        diffusion = config.diffusion.model_copy(update={"device": device})
        worker_config = config.model_copy(update={"diffusion": diffusion})
        remote = ray.remote(RenderWorker)
        began = time.monotonic()
        handles = {
            f"w{i}": remote.options(max_restarts=0, max_task_retries=0, **resources).remote(
                f"w{i}", worker_config
            )
            for i in range(count)
        }
        self._handles = handles
        self.workers: dict[str, WorkerInfo] = {}
        try:
            self._await_ready(ready_timeout)
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - began
        first = next(iter(self.workers.values()))
        if first.untrained:
            log.warning("model: %s: frames are abstract patterns, not pictures", first.model)
        log.info(
            "cluster: %d worker%s ready in %.1f s (%s on %s)",
            len(self.workers),
            "s" if len(self.workers) != 1 else "",
            self.startup_seconds,
            first.model,
            ", ".join(sorted({f"{w.host} {w.device}" for w in self.workers.values()})),
        )

    def handle(self, name: str) -> Any:
        """The Ray actor of worker ``name`` (``w0``, ``w1``, ...)."""
        return self._handles[name]

    def close(self) -> None:
        """End every actor (their models go with them)."""
        for handle in self._handles.values():
            self.ray.kill(handle)
        self._handles = {}

    def render(
        self,
        songs: Sequence[AudioFeatures],
        sinks: SinkFactory,
        *,
        chunk_seconds: float = 10.0,
        warmup: int | None = None,
        progress: ClusterProgress | None = None,
        workers: int | None = None,
        stall_seconds: float = STALL_SECONDS,
    ) -> list[Chunk]:
        """Render ``songs`` on the pool; ``sinks(i)`` makes song ``i``'s sink when it is due.

        ``warmup`` frames before each chunk (default: :func:`~bridge.cluster.plan.warmup_frames`
        of the configuration); ``workers`` uses only the first so many. Every sink is committed
        or, if the render fails, aborted. Returns the chunks planned.
        """
        if chunk_seconds <= 0:
            raise ConfigError(f"chunk_seconds must be above 0, got {chunk_seconds}")
        names = list(self.workers)[: workers or None]
        run = _Render(self, songs, sinks, names, progress, stall_seconds)
        size = piece_frames(self.config)
        chunk_frames = max(1, round(chunk_seconds * self.config.audio.fps))
        seam = warmup_frames(self.config) if warmup is None else warmup
        chunks = [
            chunk
            for index, features in enumerate(songs)
            for chunk in plan_chunks(
                index,
                features.num_frames,
                chunk_frames=chunk_frames,
                warmup=seam,
                align=size,
                batch_size=self.config.inference.batch_size,
            )
        ]
        run.go(chunks, size)
        return chunks

    def _await_ready(self, timeout: float) -> None:
        ray = self.ray
        deadline = time.monotonic() + timeout
        asked = {handle.ready.remote(): name for name, handle in self._handles.items()}
        noted = time.monotonic()
        while asked and time.monotonic() < deadline:
            done, _ = ray.wait(list(asked), num_returns=1, timeout=_TICK)
            if not done and time.monotonic() - noted > _WAITING_NOTE:
                noted = time.monotonic()
                log.info(
                    "cluster: waiting for %d worker%s to load the model (free on the cluster: %s)",
                    len(asked),
                    "s" if len(asked) != 1 else "",
                    ray.available_resources(),
                )
            for ref in done:
                name = asked.pop(ref)
                try:
                    self.workers[name] = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    raise task_error(exc, f"worker {name} cannot load the model") from None
                except ray.exceptions.RayActorError as exc:
                    log.warning("cluster: worker %s did not start: %s", name, exc)
        for name in asked.values():
            log.warning("cluster: worker %s not ready after %.0f s: left out", name, timeout)
        for name in [n for n in self._handles if n not in self.workers]:
            ray.kill(self._handles.pop(name))
        # in the order they were made (w0, w1, ...), not the order they became ready
        self.workers = {name: self.workers[name] for name in self._handles}
        if not self.workers:
            raise ClusterError(
                f"no Ray worker became ready within {timeout:.0f} s "
                f"(cluster resources: {ray.cluster_resources()})"
            )


class _Render:
    """One render's state: the queue, the workers' pieces in flight, the songs' writing."""

    def __init__(
        self,
        pool: WorkerPool,
        songs: Sequence[AudioFeatures],
        sinks: SinkFactory,
        names: list[str],
        progress: ClusterProgress | None,
        stall_seconds: float,
    ) -> None:
        self.pool = pool
        self.ray = pool.ray
        self.sinks = sinks
        self.progress = progress
        self.stall_seconds = stall_seconds
        self.songs = [_Song(features, self.ray.put(features)) for features in songs]
        self.workers = [_Worker(n, pool.handle(n), pool.workers[n]) for n in names]
        self.queue: deque[Chunk] = deque()
        self.attempts: Counter[tuple[int, int]] = Counter()
        self.size = 1

    def go(self, chunks: list[Chunk], size: int) -> None:
        self.size = size
        for chunk in chunks:
            self._enqueue(chunk)
        try:
            self._loop()
        except BaseException:
            for song in self.songs:
                if song.sink is not None and not song.done:
                    song.sink.abort()
            raise

    def _loop(self) -> None:
        ray = self.ray
        last_frame = time.monotonic()
        while not all(song.done for song in self.songs):
            self._hand_out()
            heads = {w.waiting[0].report: w for w in self.workers if w.waiting}
            if not heads:
                raise ClusterError(self._why_stuck())
            done, _ = ray.wait(list(heads), num_returns=1, timeout=_TICK)
            for ref in done:
                self._receive(heads[ref])
                last_frame = time.monotonic()
            for song in self.songs:
                self._write(song)
            if time.monotonic() - last_frame > self.stall_seconds:
                raise ClusterError(
                    f"no frame from any worker for {self.stall_seconds:.0f} s "
                    f"(workers {', '.join(w.name for w in self.workers)})"
                )

    def _enqueue(self, chunk: Chunk, *, first: bool = False) -> None:
        key = (chunk.song, chunk.warmup_from)
        self.attempts[key] += 1
        if self.attempts[key] > MAX_ATTEMPTS:
            raise ClusterError(
                f"song {chunk.song} ({self.songs[chunk.song].features.path}): frames "
                f"{chunk.start}..{chunk.stop - 1} failed {MAX_ATTEMPTS} times"
            )
        if first:
            self.queue.appendleft(chunk)
        else:
            self.queue.append(chunk)

    def _hand_out(self) -> None:
        for worker in self.workers:
            if worker.chunk is None and self.queue:
                chunk = self.queue.popleft()
                song = self.songs[chunk.song]
                worker.chunk = chunk
                for start, stop in pieces(chunk, self.size):
                    report, images = worker.handle.render_piece.options(num_returns=2).remote(
                        chunk, song.ref, start, stop
                    )
                    worker.waiting.append(_Asked(report, images, chunk, start, stop))

    def _receive(self, worker: _Worker) -> None:
        ray = self.ray
        asked = worker.waiting.popleft()
        try:
            report: PieceReport = ray.get(asked.report)
        except ray.exceptions.RayActorError as exc:
            self._lose(worker, asked, exc)
            return
        except ray.exceptions.RayTaskError as exc:
            where = f"worker {worker.name}, song {asked.chunk.song} frames {asked.start}.."
            raise task_error(exc, where) from None
        song = self.songs[asked.chunk.song]
        if asked.start >= song.written and asked.start not in song.ready:
            song.ready[asked.start] = (asked.images, asked.stop, asked.chunk)
            if self.progress is not None:
                self.progress.piece(report)
        if not worker.waiting:
            worker.chunk = None

    def _lose(self, worker: _Worker, asked: _Asked, exc: Exception) -> None:
        """A worker died: what it had not delivered of its chunk goes to another worker."""
        self.workers.remove(worker)
        self.pool.workers.pop(worker.name, None)
        chunk = asked.chunk
        log.warning(
            "cluster: worker %s died at frame %d of song %d (%s); rendering frames %d..%d again "
            "on another worker",
            worker.name,
            asked.start,
            chunk.song,
            str(exc).splitlines()[0],
            asked.start,
            chunk.stop - 1,
        )
        if self.progress is not None:
            self.progress.worker_lost(worker.name)
        self._enqueue(Chunk(chunk.song, asked.start, chunk.stop, chunk.warmup_from), first=True)

    def _write(self, song: _Song) -> None:
        """Write the song's delivered frames that come next; commit the song when whole."""
        ray = self.ray
        fps = song.features.fps
        while song.written in song.ready:
            images_ref, stop, chunk = song.ready.pop(song.written)
            start = song.written
            try:
                images: np.ndarray = ray.get(images_ref)
            except ray.exceptions.ObjectLostError:
                log.warning(
                    "cluster: frames %d..%d of song %d were lost; rendering them again",
                    start,
                    stop - 1,
                    chunk.song,
                )
                if self.progress is not None:
                    self.progress.withdraw(stop - start)
                self._enqueue(Chunk(chunk.song, start, stop, chunk.warmup_from), first=True)
                return
            if song.sink is None:
                song.sink = self.sinks(chunk.song)
            song.sink.write(
                Frame(image, index, index / fps) for index, image in enumerate(images, start=start)
            )
            song.written = stop
        if not song.done and song.written == song.features.num_frames:
            assert song.sink is not None  # a song has at least one frame
            song.sink.commit()
            song.done = True
            if self.progress is not None:
                self.progress.song_done()

    def _why_stuck(self) -> str:
        if not self.workers:
            return "every Ray worker died; the songs not finished are left unwritten"
        return "nothing left to render, yet songs are unfinished (a bug: please report it)"

"""Several outputs at once, none of which can stall the render loop.

Each output gets a lane: a worker thread and a bounded queue that drops its oldest frame when
full. ``publish`` validates the frame once (the frame rule of :mod:`bridge.outputs.publisher`),
appends it to every lane and returns at once. A lane opens, feeds and closes its output on its
own thread (Spout and Syphon tie their graphics context to the thread that made it). An output
that raises is logged (rate-limited) and, after ``max_failures`` failures in a row, closed and
disabled; the other outputs carry on.

Frames are shared between lanes, not copied: treat a frame as immutable once published. On
CUDA a frame is a slot of the engine's pinned host ring, which hands a slot out again only once
nothing refers to it, so shared memory is written straight from it and NDI is given a view.
``pump`` is the render loop's once-a-frame call on the main thread.
"""

from __future__ import annotations

import logging
import threading
import time as _time
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from bridge.outputs.publisher import FramePublisher, RGBAImage, validate_frame
from engine.errors import OutputError
from engine.lifecycle import ClosesOnExit
from engine.logs import LogThrottle

log = logging.getLogger(__name__)

_Item = tuple[RGBAImage, int, float]


@dataclass(frozen=True)
class OutputStats:
    """What one output of a group has done so far."""

    name: str
    published: int
    dropped: int
    errors: int
    disabled: bool
    last_error: str | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _Lane:
    """One output, its queue and its worker thread."""

    def __init__(self, publisher: FramePublisher, name: str, group: OutputGroup) -> None:
        self.publisher = publisher
        self.name = name
        self._group = group
        wanted = getattr(publisher, "queue_frames", None)
        depth = max(group.queue_size, wanted if isinstance(wanted, int) else 0)
        self._queue: deque[_Item] = deque(maxlen=depth)
        self._cond = threading.Condition()
        self._stopping = False
        self._drain_deadline = 0.0
        self._busy = False
        self.opened = threading.Event()
        self.open_error: BaseException | None = None
        self.published = 0
        self.dropped = 0
        self.errors = 0
        self.disabled = False
        self.last_error: str | None = None
        self._failures_in_row = 0
        self._throttle = LogThrottle(log, burst=1, interval=group.log_interval_s)
        self._pump_throttle = LogThrottle(log, burst=1, interval=group.log_interval_s)
        self.thread = threading.Thread(target=self._run, name=f"output {name}", daemon=True)

    def start(self, width: int, height: int, fps: float) -> None:
        self._size = (width, height, fps)
        self.thread.start()

    def put(self, item: _Item) -> None:
        with self._cond:
            if self.disabled or self._stopping:
                return
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1  # the deque drops the oldest on append
            self._queue.append(item)
            self._cond.notify()

    def stop(self, drain_s: float) -> None:
        with self._cond:
            self._stopping = True
            self._drain_deadline = _time.monotonic() + drain_s
            self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._busy

    def stats(self) -> OutputStats:
        with self._cond:
            return OutputStats(
                self.name,
                self.published,
                self.dropped,
                self.errors,
                self.disabled,
                self.last_error,
            )

    def pump(self) -> None:
        """Give the output's caller-thread housekeeping a turn (see :meth:`OutputGroup.pump`)."""
        if self.disabled or self._stopping or not self.opened.is_set():
            return
        pump = getattr(self.publisher, "pump", None)
        if pump is None:
            return
        try:
            pump()
        except Exception as exc:  # noqa: BLE001 - housekeeping must never stop the render loop
            self._pump_throttle.warning(
                "output %s: pump failed: %s: %s", self.name, type(exc).__name__, exc
            )

    def _run(self) -> None:
        width, height, fps = self._size
        try:
            self.publisher.open(width, height, fps)
        except BaseException as exc:  # noqa: BLE001 - reported to the opener, which raises it
            self.open_error = exc
            self.disabled = True
            self.opened.set()
            return
        self.opened.set()
        try:
            while True:
                item = self._next()
                if item is None:
                    break
                self._publish(item)
        finally:
            self._close_publisher()

    def _next(self) -> _Item | None:
        with self._cond:
            self._busy = False
            while not self._queue and not self._stopping and not self.disabled:
                self._cond.wait()
            if self.disabled or not self._queue:
                return None
            if self._stopping and _time.monotonic() > self._drain_deadline:
                self.dropped += len(self._queue)
                self._queue.clear()
                return None
            self._busy = True
            return self._queue.popleft()

    def _publish(self, item: _Item) -> None:
        try:
            self.publisher.publish(*item)
        except Exception as exc:  # noqa: BLE001 - an output lane counts its failures, disables itself
            self._failed(exc)
        else:
            with self._cond:
                self.published += 1
                self._failures_in_row = 0

    def _failed(self, exc: Exception) -> None:
        with self._cond:
            self.errors += 1
            self._failures_in_row += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            give_up = self._failures_in_row >= self._group.max_failures
            if give_up:
                self.disabled = True
                self.dropped += len(self._queue)
                self._queue.clear()
        if give_up:
            log.error(
                "output %s disabled after %d failures in a row (last: %s)",
                self.name,
                self._group.max_failures,
                self.last_error,
            )
            return
        self._throttle.warning("output %s failed: %s", self.name, self.last_error)

    def _close_publisher(self) -> None:
        try:
            self.publisher.close()
        except Exception as exc:  # noqa: BLE001 - counted like a publish failure; the others close
            with self._cond:
                self.errors += 1
                self.last_error = f"{type(exc).__name__} on close: {exc}"
            log.warning("output %s failed to close: %s", self.name, exc)


class OutputGroup(ClosesOnExit):
    """Feeds several outputs from one render loop; ``publish`` never blocks.

    ``queue_size`` frames wait per output at most (the oldest is dropped first; a recording
    output may ask for more with its ``queue_frames``, see :class:`FramePublisher`); an output is
    disabled after ``max_failures`` failed publishes in a row; failures are logged at most once
    per ``log_interval_s`` per output; ``close`` drains for at most ``close_timeout_s / 2`` and
    returns within about ``close_timeout_s``.
    """

    def __init__(
        self,
        publishers: Iterable[FramePublisher],
        *,
        queue_size: int = 2,
        max_failures: int = 10,
        log_interval_s: float = 5.0,
        open_timeout_s: float = 10.0,
        close_timeout_s: float = 5.0,
    ) -> None:
        self.publishers = list(publishers)
        if not self.publishers:
            raise OutputError("an output group needs at least one output")
        if queue_size < 1 or max_failures < 1:
            raise OutputError(
                f"output group: queue_size ({queue_size}) and max_failures ({max_failures}) "
                "must be at least 1"
            )
        self.queue_size = queue_size
        self.max_failures = max_failures
        self.log_interval_s = log_interval_s
        self.open_timeout_s = open_timeout_s
        self.close_timeout_s = close_timeout_s
        self.name = "group:" + ",".join(p.name for p in self.publishers)
        self._lanes: list[_Lane] = []
        self._open = False

    def open(self, width: int, height: int, fps: float) -> None:
        """Open every output on its own thread; raise the first failure after closing the rest."""
        if self._open or self._lanes:
            raise OutputError(f"{self.name} is already open")
        names: set[str] = set()
        for publisher in self.publishers:
            name, n = publisher.name, 2
            while name in names:
                name, n = f"{publisher.name}#{n}", n + 1
            names.add(name)
            self._lanes.append(_Lane(publisher, name, self))
        for lane in self._lanes:
            lane.start(width, height, fps)
        deadline = _time.monotonic() + self.open_timeout_s
        failure: OutputError | None = None
        for lane in self._lanes:
            if not lane.opened.wait(max(0.0, deadline - _time.monotonic())):
                failure = failure or OutputError(
                    f"output {lane.name!r} did not open within {self.open_timeout_s:g} s"
                )
            elif lane.open_error is not None and failure is None:
                exc = lane.open_error
                failure = (
                    exc
                    if isinstance(exc, OutputError)
                    else OutputError(
                        f"output {lane.name!r} failed to open: {type(exc).__name__}: {exc}"
                    )
                )
        if failure is not None:
            self._shutdown(self.close_timeout_s)
            raise failure
        self._open = True

    def publish(self, frame: np.ndarray, index: int, time: float) -> None:
        """Queue one frame for every enabled output and return at once."""
        if not self._open:
            raise OutputError(f"{self.name} is not open")
        image = validate_frame(frame)
        item = (image, int(index), float(time))
        for lane in self._lanes:
            lane.put(item)

    def pump(self) -> None:
        """Run each open output's ``pump()`` on the calling thread; call it between frames.

        For work that must happen on the main thread rather than an output's own (Syphon's
        discovery notifications arrive on the main run loop). Each pump is short by contract;
        one that raises is logged (rate-limited) and the others still run.
        """
        if not self._open:
            return
        for lane in self._lanes:
            lane.pump()

    def flush(self, timeout: float) -> bool:
        """Wait until every enabled output has published its queue; False on timeout.

        For offline renders that need every frame in a file: publish, then flush.
        """
        deadline = _time.monotonic() + timeout
        while True:
            if all(lane.disabled or lane.idle() for lane in self._lanes):
                return True
            if _time.monotonic() >= deadline:
                return False
            _time.sleep(0.002)

    def stats(self) -> dict[str, OutputStats]:
        """Per-output counts, keyed by output name (a repeated name gets ``#2``, ``#3``...)."""
        return {lane.name: lane.stats() for lane in self._lanes}

    def close(self, timeout: float | None = None) -> None:
        """Drain briefly, close every output, return within about ``timeout`` seconds."""
        if not self._lanes:
            return
        self._shutdown(self.close_timeout_s if timeout is None else timeout)

    def _shutdown(self, timeout: float) -> None:
        self._open = False
        for lane in self._lanes:
            lane.stop(drain_s=timeout / 2)
        deadline = _time.monotonic() + timeout
        for lane in self._lanes:
            lane.thread.join(max(0.0, deadline - _time.monotonic()))
            if lane.thread.is_alive():
                log.error("output %s did not close within %.1f s; left behind", lane.name, timeout)

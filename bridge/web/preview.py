"""The live preview: the output as JPEG, encoded off the render thread and only while watched.

:class:`PreviewOutput` is a frame output like the others: the daemon adds it to its output group,
so it runs on its own thread behind a drop-oldest queue and the render loop pays only the
queue's append. While nobody watches it returns at once; while someone does, it encodes at most
:data:`MAX_FPS` frames a second, scaled to at most :data:`MAX_SIZE` pixels on the long side
(Pillow). :class:`PreviewFeed` hands the newest JPEG to the event loop that serves it as MJPEG
(``multipart/x-mixed-replace``, which browsers show in an ``<img>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import time
from collections.abc import Callable, Iterator

from PIL import Image

from bridge.outputs.publisher import PublisherBase, RGBAImage

MAX_FPS = 10.0
"""Preview frames per second at most."""
MAX_SIZE = 512
"""The preview's long side, in pixels, at most (smaller outputs keep their size)."""
QUALITY = 80
"""JPEG quality of the preview."""


def preview_size(width: int, height: int, limit: int = MAX_SIZE) -> tuple[int, int]:
    """``(width, height)`` scaled down so the long side is at most ``limit`` (never up)."""
    scale = min(1.0, limit / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode_jpeg(frame: RGBAImage, limit: int = MAX_SIZE, quality: int = QUALITY) -> bytes:
    """One RGBA frame as a JPEG of at most ``limit`` pixels on the long side."""
    height, width = frame.shape[:2]
    image = Image.frombuffer("RGBA", (width, height), frame, "raw", "RGBA", 0, 1).convert("RGB")
    size = preview_size(width, height, limit)
    if size != (width, height):
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


class PreviewFeed:
    """The newest preview JPEG and who watches it; written by the output, read by the server.

    Watchers are counted by the server (:meth:`watch`); the output encodes only while the count
    is above zero. Each new JPEG wakes the waiting streams on the server's event loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jpeg: bytes | None = None
        self._sequence = 0
        self._watchers = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next: asyncio.Future[None] | None = None
        self.encoded = 0
        """JPEGs encoded so far (counted for tests and the benchmark)."""

    @property
    def watchers(self) -> int:
        return self._watchers

    def latest(self) -> tuple[int, bytes | None]:
        """The newest JPEG and its sequence number (0 and None before the first)."""
        with self._lock:
            return self._sequence, self._jpeg

    def put(self, jpeg: bytes) -> None:
        """Store a new JPEG (output thread) and wake the streams waiting for it."""
        with self._lock:
            self._jpeg = jpeg
            self._sequence += 1
            self.encoded += 1
            loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake)

    @contextlib.contextmanager
    def watch(self) -> Iterator[None]:
        """Count one watcher for the block (on the server's event loop)."""
        with self._lock:
            self._watchers += 1
            self._loop = asyncio.get_running_loop()
        try:
            yield None
        finally:
            with self._lock:
                self._watchers -= 1

    async def wait_newer(self, sequence: int, timeout: float) -> tuple[int, bytes | None]:
        """The newest JPEG once it is newer than ``sequence`` (or the same one after ``timeout``)."""
        current = self.latest()
        if current[0] > sequence:
            return current
        if self._next is None or self._next.done():
            self._next = asyncio.get_running_loop().create_future()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._next), timeout)
        return self.latest()

    def wake_all(self) -> None:
        """Wake every waiting stream now (on the server's event loop: it is stopping)."""
        self._wake()

    def _wake(self) -> None:
        waiter, self._next = self._next, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class PreviewOutput(PublisherBase):
    """A frame output that feeds :class:`PreviewFeed` while anyone watches (``preview``)."""

    def __init__(
        self,
        feed: PreviewFeed,
        *,
        max_fps: float = MAX_FPS,
        max_size: int = MAX_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("preview")
        self.feed = feed
        self.max_fps = max_fps
        self.max_size = max_size
        self._clock = clock
        self._last = -float("inf")

    def _open(self, width: int, height: int, fps: float) -> None:
        self._last = -float("inf")

    def _publish(self, frame: RGBAImage, index: int, time: float) -> None:
        if self.feed.watchers <= 0:
            return
        now = self._clock()
        if now - self._last < 1.0 / self.max_fps:
            return
        self._last = now
        self.feed.put(encode_jpeg(frame, self.max_size))

    def _close(self) -> None:
        pass

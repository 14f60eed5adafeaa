"""One progress bar for a whole cluster render: frames done of all songs, each worker's speed.

The bar counts frames delivered by the workers (warm-up frames are work, not progress); its
text names the songs finished, every worker's frames per second over its last few pieces,
and the workers lost and chunks rendered again, if any.
"""

from __future__ import annotations

from collections import deque
from typing import TextIO

from tqdm import tqdm

from bridge.cluster.worker import PieceReport

# pieces each worker's speed is averaged over
_WINDOW = 8


class ClusterProgress:
    """The bar (``tqdm``) and the per-worker speeds; ``disable`` keeps the figures, shows nothing."""

    def __init__(
        self,
        total_frames: int,
        songs: int,
        *,
        disable: bool = False,
        file: TextIO | None = None,
    ) -> None:
        self.songs = songs
        self.songs_done = 0
        self.frames_done = 0
        self.retries = 0
        self.lost: list[str] = []
        self._speeds: dict[str, deque[tuple[int, float]]] = {}
        self._bar = tqdm(
            total=total_frames,
            unit="frame",
            desc="render",
            disable=disable,
            dynamic_ncols=True,
            file=file,
        )

    def piece(self, report: PieceReport) -> None:
        """A worker delivered frames."""
        frames = report.stop - report.start
        self.frames_done += frames
        window = self._speeds.setdefault(report.worker, deque(maxlen=_WINDOW))
        window.append((report.rendered, report.seconds))
        self._bar.update(frames)
        self._show()

    def withdraw(self, frames: int) -> None:
        """Frames counted before must be rendered again (their data was lost)."""
        self.frames_done -= frames
        self.retries += 1
        self._bar.update(-frames)
        self._show()

    def worker_lost(self, worker: str) -> None:
        """A worker died; its unfinished chunk goes to another."""
        self.lost.append(worker)
        self.retries += 1
        self._speeds.pop(worker, None)
        self._show()

    def song_done(self) -> None:
        self.songs_done += 1
        self._show()

    def worker_fps(self) -> dict[str, float]:
        """Each live worker's frames per second over its last pieces (warm-up frames count)."""
        speeds = {}
        for worker, window in self._speeds.items():
            seconds = sum(s for _, s in window)
            if seconds > 0:
                speeds[worker] = sum(n for n, _ in window) / seconds
        return speeds

    def text(self) -> str:
        """The bar's status text: songs done, worker speeds, losses."""
        parts = [f"songs {self.songs_done}/{self.songs}"]
        speeds = self.worker_fps()
        if speeds:
            parts.append(", ".join(f"{w} {fps:.1f} fps" for w, fps in sorted(speeds.items())))
        if self.lost:
            parts.append(f"lost {', '.join(self.lost)}")
        if self.retries:
            parts.append(f"{self.retries} re-rendered")
        return " | ".join(parts)

    def close(self) -> None:
        self._show()
        self._bar.close()

    def _show(self) -> None:
        self._bar.set_postfix_str(self.text(), refresh=True)

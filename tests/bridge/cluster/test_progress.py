"""The one progress bar of a cluster render: frames of all songs, each worker's speed, losses."""

from __future__ import annotations

import io

import pytest

from bridge.cluster.progress import ClusterProgress
from bridge.cluster.worker import PieceReport


def report(worker: str, start: int, stop: int, rendered: int, seconds: float) -> PieceReport:
    return PieceReport(worker, 0, start, stop, rendered, seconds)


def test_bar_counts_delivered_frames_and_each_workers_speed() -> None:
    out = io.StringIO()
    bar = ClusterProgress(100, 3, file=out)
    bar.piece(report("w0", 0, 10, 18, 2.0))  # 8 warm-up frames: work, not progress
    bar.piece(report("w1", 40, 50, 10, 0.5))
    bar.piece(report("w0", 10, 20, 10, 0.5))
    assert bar.frames_done == 30
    assert bar.worker_fps() == {"w0": pytest.approx(28 / 2.5), "w1": pytest.approx(20.0)}
    bar.song_done()
    text = bar.text()
    assert text.startswith("songs 1/3 | w0 11.2 fps, w1 20.0 fps")
    bar.close()
    shown = out.getvalue()
    assert "30/100" in shown
    assert "w1 20.0 fps" in shown


def test_a_lost_worker_and_lost_frames_are_shown() -> None:
    bar = ClusterProgress(50, 1, disable=True)
    bar.piece(report("w0", 0, 10, 10, 1.0))
    bar.piece(report("w1", 10, 20, 10, 1.0))
    bar.worker_lost("w1")
    assert "w1" not in bar.worker_fps()
    bar.withdraw(10)
    assert bar.frames_done == 10
    assert bar.text() == "songs 0/1 | w0 10.0 fps | lost w1 | 2 re-rendered"
    bar.close()

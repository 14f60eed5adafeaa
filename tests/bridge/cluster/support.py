"""What the cluster tests and benchmark share: songs on disk, frames of an mp4, a local Ray cluster.

Ray is imported only by :func:`local_cluster`: the CLI tests run where the extra is not installed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import av
import numpy as np

from tests.engine.audio.signals import chord, click_track, write_audio
from tests.netns import private_network


def write_song(folder: Path, name: str, seconds: float) -> Path:
    """``folder/name.wav``: clicks at 120 BPM over a C major chord, stereo, 22.05 kHz."""
    sr = 22050
    clicks, _ = click_track(120, seconds, sr, offset=0.0)
    mono = clicks + chord([60, 64, 67], seconds, sr)
    return write_audio(folder / f"{name}.wav", np.stack([mono, mono], axis=1), sr)


def decoded_frames(path: Path) -> int:
    """How many video frames the file at ``path`` decodes to."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@contextmanager
def local_cluster(cpus: int) -> Iterator[tuple[ModuleType, bool, float]]:
    """A local Ray cluster of ``cpus`` CPUs, in a private network namespace where one may be made
    (see tests/netns.py), else addressed on 127.0.0.1.

    Yields (ray, whether it is in a private namespace, seconds ``ray.init`` took).
    """
    import ray

    with private_network() as isolated:
        began = time.perf_counter()
        ray.init(
            num_cpus=cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        started = time.perf_counter() - began
        try:
            yield ray, isolated, started
        finally:
            ray.shutdown()

"""Audio files in, mp4 files out, on a Ray cluster: the cluster form of :mod:`bridge.offline`.

The driver (this process) analyses the songs and writes the videos; the workers only render.
Each song's video is written in frame order as its pieces arrive, through the same
:class:`~bridge.offline.SongVideo` as a single-process render: under ``NAME.partial.mp4``,
with the song's audio muxed once, in the one writer of the song, and renamed when the last
chunk is in. A failed or interrupted render removes its partial files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bridge.cluster.pool import WorkerPool
from bridge.cluster.progress import ClusterProgress
from bridge.cluster.session import import_ray, ray_session
from bridge.offline import SongVideo, plan_outputs
from bridge.options import RenderOptions
from engine.audio.analyzer import AudioAnalyzer
from engine.audio.types import AudioFeatures
from engine.config import PipelineConfig
from engine.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SongFile:
    """A song to render: its audio file, its analysis and where its video goes."""

    audio: Path
    features: AudioFeatures
    target: Path


def analyse_songs(config: PipelineConfig, files: Sequence[Path], out: Path) -> list[SongFile]:
    """Check the outputs, then analyse every song (cached on disk as in a single render)."""
    targets = plan_outputs(files, out)
    analyzer = AudioAnalyzer(config.audio)
    return [
        SongFile(file, analyzer.analyze(file), target)
        for file, target in zip(files, targets, strict=True)
    ]


def render_to_files(
    pool: WorkerPool,
    config: PipelineConfig,
    songs: Sequence[SongFile],
    options: RenderOptions,
    progress: ClusterProgress,
) -> list[Path]:
    """Render analysed songs on ``pool`` into their mp4 files; returns the files written."""
    width, height, fps = config.inference.width, config.inference.height, config.audio.fps

    def sink(index: int) -> SongVideo:
        song = songs[index]
        return SongVideo(song.target, song.audio, width, height, fps)

    try:
        pool.render(
            [song.features for song in songs],
            sink,
            chunk_seconds=options.chunk_seconds,
            warmup=options.warmup_frames,
            progress=progress,
            workers=options.workers,
        )
    finally:
        progress.close()
    return [song.target for song in songs]


def render_songs_on_cluster(
    config: PipelineConfig,
    files: Sequence[Path],
    out: Path,
    options: RenderOptions,
    *,
    progress: bool = True,
) -> list[Path]:
    """`hamba render --cluster`: each song to an mp4 with its audio; returns the written paths."""
    if options.cluster is None:
        raise ConfigError("render options: a cluster render needs cluster = local, auto or ray://")
    import_ray()  # a missing extra is named before any analysis or model load
    if config.profiling.enabled:
        log.warning("profiling: the workers render in processes of their own; not profiled")
    songs = analyse_songs(config, files, out)
    with ray_session(options.cluster) as ray:
        pool = WorkerPool(ray, config, workers=options.workers)
        try:
            bar = ClusterProgress(
                sum(song.features.num_frames for song in songs), len(songs), disable=not progress
            )
            return render_to_files(pool, config, songs, options, bar)
        finally:
            pool.close()

"""Offline renders: songs to mp4 files with their audio muxed in, with a progress bar.

Nothing is dropped offline: every frame of the song is rendered, in order, and written through
the video output directly (no real-time queue). A render goes to a ``.partial.mp4`` file first
and takes its final name only when complete, so an interrupted render never leaves a file that
looks finished. The cluster path (:mod:`bridge.cluster`) writes through the same
:class:`SongVideo` and output checks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tqdm import tqdm

from bridge.outputs.base import create_output
from engine.audio.analyzer import AudioAnalyzer
from engine.config import PipelineConfig
from engine.errors import AudioError, ConfigError, OutputError
from engine.frame import Frame
from engine.profiling.profiler import get_profiler
from engine.render import Conductor


def plan_outputs(files: Sequence[Path], out: Path) -> list[Path]:
    """Where each song's video goes: ``out`` itself for one song to an .mp4, else ``out/NAME.mp4``."""
    for file in files:
        if not file.is_file():
            raise AudioError(f"audio file not found: {file}")
    if out.suffix.lower() == ".mp4":
        if len(files) != 1:
            raise ConfigError(f"{len(files)} songs need a folder for -o, not the file {out}")
        targets = [out]
    else:
        if out.exists() and not out.is_dir():
            raise OutputError(f"output {out} exists and is not a folder")
        stems = [f.stem for f in files]
        if len(set(stems)) != len(stems):
            raise ConfigError("two songs share a name; their videos would overwrite each other")
        targets = [out / f"{stem}.mp4" for stem in stems]
    for target in targets:
        _check_writable(target.parent)
    return targets


def _check_writable(folder: Path) -> None:
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise OutputError(f"cannot write to {folder}: {probe} is not a writable folder")


class SongVideo:
    """One song's mp4 with its audio, written as ``NAME.partial.mp4`` and renamed when whole.

    Opening creates the partial file; :meth:`write` takes frames in order (any number of
    calls), :meth:`commit` gives the file its final name, :meth:`abort` removes it.
    """

    def __init__(self, target: Path, audio: Path, width: int, height: int, fps: float) -> None:
        self.target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        self.partial = target.with_name(target.stem + ".partial.mp4")
        self._writer = create_output(f"file:{self.partial}", audio_path=audio)
        self._writer.open(width, height, fps)

    def write(self, frames: Iterable[Frame]) -> None:
        for frame in frames:
            self._writer.publish(frame.image, frame.index, frame.time)

    def commit(self) -> Path:
        """Close the file (the audio is muxed to its end) and give it its final name."""
        self._writer.close()
        self.partial.replace(self.target)
        return self.target

    def abort(self) -> None:
        """Close and delete the partial file."""
        self._writer.close()
        self.partial.unlink(missing_ok=True)


def report_profile(config: PipelineConfig) -> None:
    """Print (and export) the profiler's per-stage timings when profiling is on."""
    if config.profiling.enabled:
        profiler = get_profiler()
        profiler.print_summary()
        if config.profiling.export_path is not None:
            profiler.export_json(config.profiling.export_path)


def render_songs(
    config: PipelineConfig,
    files: Sequence[Path],
    out: Path,
    *,
    progress: bool = True,
) -> list[Path]:
    """Render each song to an mp4 with its audio; returns the written paths."""
    targets = plan_outputs(files, out)
    analyzer = AudioAnalyzer(config.audio)
    conductor = Conductor.from_config(config)
    width, height, fps = config.inference.width, config.inference.height, config.audio.fps
    written = []
    for file, target in zip(files, targets, strict=True):
        features = analyzer.analyze(file)
        video = SongVideo(target, file, width, height, fps)
        try:
            with tqdm(
                total=features.num_frames,
                unit="frame",
                desc=file.name,
                disable=not progress,
                dynamic_ncols=True,
            ) as bar:
                video.write(conductor.render_features(features, progress=bar.update))
        except BaseException:
            video.abort()
            raise
        written.append(video.commit())
    report_profile(config)
    return written

"""`hamba render --cluster` on this machine: throughput with 1 and 2 workers, per-song costs, seams.

Three parts, all on the built-in tiny model (untrained random weights) on the CPU:

1. **Songs** (``--sizes``, default 128x128 at 24 fps): ``--songs`` synthetic songs (clicks over
   a chord, ``--seconds`` each) rendered to mp4 with their audio, the way `hamba render` does:
   the single-process path (:func:`bridge.offline.render_songs`'s loop: one conductor, a
   :class:`~bridge.offline.SongVideo` per song) and the cluster path
   (:func:`bridge.cluster.render.render_to_files`) with 1 and then 2 workers on a local Ray
   cluster of 2 CPUs. Timed apart: starting Ray (``ray.init``), starting the pool (actors up
   and the model loaded in each), the render itself (frames / wall time, driver-side H.264 +
   AAC encoding included, as a user waits for it), and the encode + mux of one song alone
   (its frames rendered beforehand) which both paths pay. The per-song overhead of the cluster
   path is ``(cluster render with 1 worker - single-process render) / songs``.
2. **One long song** (``--long-seconds``) split into chunks of ``--chunk-seconds``, rendered on
   1 and 2 workers without encoding: the frames per second a single song gets from chunking,
   and the PSNR of every frame at and after each seam against the unsplit single-process
   render (the seams measured through Ray).
3. **Seams** (``--seams``, in process, 64x64): the worst PSNR of the frames at and after a
   seam against the unsplit render, for the presets and blends 0.2 to 0.9, at warm-ups from
   0 frames to the rule's (:func:`bridge.cluster.plan.warmup_frames`), on quiet music (energy
   near 0 blends most) and on music of random energy. A worker renders exactly
   :meth:`~engine.render.Conductor.render_span` (the tests show the cluster's frames equal it),
   so this part runs it directly, without Ray.

The Ray cluster runs inside a private network namespace when this process may make one (root),
else addressed on 127.0.0.1. Writes ``benchmarks/results/cluster.json`` (or ``--out``).
Run: ``python -m benchmarks.bench_cluster`` (``--help``) or ``hamba bench cluster``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from benchmarks.bench_engine import RESULTS, load_average, versions, write_results
from engine.audio.types import AudioFeatures
from engine.config import PipelineConfig
from engine.frame import Frame

SAMPLE_RATE = 22050
BPM = 120.0


def song_audio(path: Path, seconds: float, seed: int) -> Path:
    """Clicks at 120 BPM over a chord (its root from ``seed``), stereo, 22.05 kHz."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    root = 220.0 * 2 ** ((seed % 12) / 12)
    tone = sum(0.15 * np.sin(2 * np.pi * root * r * t) for r in (1.0, 1.26, 1.5))
    clicks = np.zeros_like(t)
    period = int(SAMPLE_RATE * 60 / BPM)
    for start in range(0, t.size, period):
        clicks[start : start + 200] += np.hanning(400)[:200][: t.size - start]
    mono = (tone + 0.5 * clicks).astype(np.float32)
    sf.write(path, np.stack([mono, mono], axis=1), SAMPLE_RATE)
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _finite(value: float) -> float | str:
    return "identical" if math.isinf(value) else round(value, 1)


def tiny_config(size: int, fps: float, cache: Path, **overrides: Any) -> PipelineConfig:
    base = {
        "diffusion.model": "tiny",
        "inference.width": size,
        "inference.height": size,
        "audio.fps": fps,
        "audio.cache_dir": str(cache),
    }
    return PipelineConfig().with_overrides({**base, **overrides})


class _Collect:
    """A frame sink that keeps the images (the long-song part measures frames, not files)."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []

    def write(self, frames: Iterable[Frame]) -> None:
        self.images.extend(frame.image for frame in frames)

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass


@contextmanager
def local_cluster(cpus: int) -> Iterator[tuple[Any, bool, float]]:
    """(ray, in a private network namespace, seconds ray.init took)."""
    import ray

    from tests.netns import private_network

    with private_network() as isolated:
        began = time.perf_counter()
        ray.init(
            num_cpus=cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level="WARNING",
            log_to_driver=False,
        )
        started = time.perf_counter() - began
        try:
            yield ray, isolated, started
        finally:
            ray.shutdown()


# part 1: songs to mp4, single process against the cluster


def single_process(config: PipelineConfig, songs: Sequence[Any], out: Path) -> dict[str, Any]:
    from bridge.offline import SongVideo
    from engine.render import Conductor

    began = time.perf_counter()
    conductor = Conductor.from_config(config)
    conductor.stream.base.load_model()
    load = time.perf_counter() - began
    width, height, fps = config.inference.width, config.inference.height, config.audio.fps
    began = time.perf_counter()
    frames = 0
    for song in songs:
        video = SongVideo(out / song.target.name, song.audio, width, height, fps)
        video.write(conductor.render_features(song.features))
        video.commit()
        frames += song.features.num_frames
    seconds = time.perf_counter() - began
    return {"model_load_s": round(load, 2), "render_s": round(seconds, 2), "fps": frames / seconds}


def encode_mux_per_song(config: PipelineConfig, song: Any, out: Path) -> float:
    """Seconds to write one song's already-rendered frames through SongVideo (H.264 + AAC)."""
    from bridge.offline import SongVideo
    from engine.render import Conductor

    frames = list(Conductor.from_config(config).render_features(song.features))
    width, height, fps = config.inference.width, config.inference.height, config.audio.fps
    began = time.perf_counter()
    video = SongVideo(out / "mux_only.mp4", song.audio, width, height, fps)
    video.write(frames)
    video.commit()
    return time.perf_counter() - began


def cluster_songs(
    ray: Any, config: PipelineConfig, songs: Sequence[Any], out: Path, workers: int
) -> dict[str, Any]:
    from bridge.cluster.pool import WorkerPool
    from bridge.cluster.progress import ClusterProgress
    from bridge.cluster.render import SongFile, render_to_files
    from bridge.options import RenderOptions

    began = time.perf_counter()
    pool = WorkerPool(ray, config, workers=workers)
    ready = time.perf_counter() - began
    try:
        targets = [SongFile(s.audio, s.features, out / s.target.name) for s in songs]
        total = sum(s.features.num_frames for s in songs)
        bar = ClusterProgress(total, len(songs), disable=True)
        began = time.perf_counter()
        render_to_files(pool, config, targets, RenderOptions(cluster="local"), bar)
        seconds = time.perf_counter() - began
        model_loads = [round(w.load_seconds, 2) for w in pool.workers.values()]
    finally:
        pool.close()
    return {
        "pool_ready_s": round(ready, 2),
        "model_load_s_per_worker": model_loads,
        "render_s": round(seconds, 2),
        "fps": total / seconds,
        "worker_fps": {k: round(v, 1) for k, v in bar.worker_fps().items()},
    }


def run_songs(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from bridge.cluster.render import analyse_songs

    results: dict[str, Any] = {}
    for size in args.sizes:
        config = tiny_config(size, args.fps, work / "cache")
        files = [song_audio(work / f"song{i}.wav", args.seconds, i) for i in range(args.songs)]
        songs = analyse_songs(config, files, work / "out")
        row: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(dir=work) as out:
            row["single_process"] = single_process(config, songs, Path(out))
            row["encode_mux_s_per_song"] = round(
                encode_mux_per_song(config, songs[0], Path(out)), 3
            )
        with local_cluster(2) as (ray, isolated, started):
            row["ray_init_s"] = round(started, 2)
            row["private_network_namespace"] = isolated
            for workers in (1, 2):
                with tempfile.TemporaryDirectory(dir=work) as out:
                    row[f"cluster_{workers}_worker"] = cluster_songs(
                        ray, config, songs, Path(out), workers
                    )
        single, one = row["single_process"], row["cluster_1_worker"]
        row["per_song_overhead_s"] = round((one["render_s"] - single["render_s"]) / len(songs), 3)
        row["speedup_2_vs_1_worker"] = round(row["cluster_2_worker"]["fps"] / one["fps"], 2)
        results[f"{size}x{size}"] = row
    return results


# part 2: one long song in chunks, through Ray


def run_long_song(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from bridge.cluster.plan import warmup_frames
    from bridge.cluster.pool import WorkerPool
    from bridge.cluster.progress import ClusterProgress
    from engine.audio.analyzer import AudioAnalyzer
    from engine.render import Conductor

    size = args.sizes[0]
    config = tiny_config(size, args.fps, work / "cache")
    features = AudioAnalyzer(config.audio).analyze(
        song_audio(work / "long.wav", args.long_seconds, 3)
    )
    whole = [f.image for f in Conductor.from_config(config).render_features(features)]
    row: dict[str, Any] = {
        "size": f"{size}x{size}",
        "frames": features.num_frames,
        "chunk_seconds": args.chunk_seconds,
        "warmup_frames": warmup_frames(config),
    }
    with local_cluster(2) as (ray, _isolated, _started):
        for workers in (1, 2):
            pool = WorkerPool(ray, config, workers=workers)
            try:
                sinks = [_Collect()]
                bar = ClusterProgress(features.num_frames, 1, disable=True)
                began = time.perf_counter()
                chunks = pool.render(
                    [features], sinks.__getitem__, chunk_seconds=args.chunk_seconds, progress=bar
                )
                seconds = time.perf_counter() - began
            finally:
                pool.close()
            images = sinks[0].images
            worst = {
                str(c.start): _finite(
                    min(psnr(images[i], whole[i]) for i in range(c.start, c.stop))
                )
                for c in chunks[1:]
            }
            row[f"{workers}_worker"] = {"fps": features.num_frames / seconds, "render_s": seconds}
            row["chunks"] = len(chunks)
            row["seam_worst_psnr_db"] = worst
    row["speedup_2_vs_1_worker"] = round(row["2_worker"]["fps"] / row["1_worker"]["fps"], 2)
    return row


# part 3: seams against warm-up, in process


# name: (what it is, settings)
SEAM_MODES: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("defaults: blend 0.3, 1 step", {}),
    "fast": ("preset fast: similarity filter, blend 0.35", {"preset": "fast"}),
    "balanced": ("preset balanced: 2 steps, stream batch", {"preset": "balanced"}),
    "quality": ("preset quality: 4 steps, blend 0.2", {"preset": "quality"}),
    "blend0.5": ("blend 0.5", {"stream.temporal_blend_ratio": 0.5}),
    "blend0.7": ("blend 0.7", {"stream.temporal_blend_ratio": 0.7}),
    "blend0.9": ("blend 0.9", {"stream.temporal_blend_ratio": 0.9}),
    "feedback": ("img2img feedback", {"stream.img2img_feedback": True}),
}


def run_seams(
    frames: int, chunk: int, size: int, work: Path, modes: Sequence[str]
) -> dict[str, Any]:
    from bridge.cluster.plan import warmup_frames
    from engine.render import Conductor

    rng = np.random.default_rng(0)
    musics = {
        "quiet (energy 0-0.05)": 0.05 * rng.random(frames),
        "random energy": rng.random(frames),
    }
    results: dict[str, Any] = {}
    for name in modes:
        mode, fixed = SEAM_MODES[name]
        settings = dict(fixed)
        preset = settings.pop("preset", None)
        base = PipelineConfig.preset(preset) if preset else PipelineConfig()
        config = base.with_overrides(
            {
                "diffusion.model": "tiny",
                "inference.width": size,
                "inference.height": size,
                "audio.cache_dir": str(work / "cache"),
                **settings,
            }
        )
        rule = warmup_frames(config)
        conductor = Conductor.from_config(config)
        batch = config.inference.batch_size
        row: dict[str, Any] = {"rule_warmup_frames": rule, "batch_size": batch}
        for music, energy in musics.items():
            features = _features(frames, energy)
            whole = [f.image for f in conductor.render_features(features)]
            tried = sorted({0, 2, 4, 8, *([rule] if rule is not None else [24, 48])})
            by_warmup = {}
            for warmup in tried:
                worst = math.inf
                for seam in range(chunk, frames, chunk):
                    first = max(0, seam - warmup)
                    first -= first % batch
                    stop = min(seam + chunk, frames)
                    span = conductor.render_span(features, seam, stop, warmup_from=first)
                    worst = min(worst, *(psnr(f.image, whole[f.index]) for f in span))
                by_warmup[str(warmup)] = _finite(worst)
            row[music] = by_warmup
        results[mode] = row
        print(f"  {mode}: rule {rule}, {row}", flush=True)
    return results


def _features(frames: int, energy: np.ndarray) -> AudioFeatures:
    # 120 BPM at 24 fps, a random chromagram: the shape of tests/engine/synthetic.py
    rng = np.random.default_rng(1)
    chroma = rng.random((12, frames))
    zeros = np.zeros(frames, dtype=np.float32)
    return AudioFeatures(
        path="synthetic",
        duration=frames / 24.0,
        fps=24.0,
        sample_rate=SAMPLE_RATE,
        tempo=BPM,
        beat_frames=np.arange(0, frames, 12),
        onset=zeros,
        energy=energy.astype(np.float32),
        chroma_cq=(chroma / chroma.max(axis=0, keepdims=True)).astype(np.float32),
        low=zeros,
        mid=zeros,
        high=zeros,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128])
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--songs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--long-seconds", type=float, default=24.0)
    parser.add_argument("--chunk-seconds", type=float, default=4.0)
    parser.add_argument("--seam-frames", type=int, default=200)
    parser.add_argument("--seam-chunk", type=int, default=100)
    parser.add_argument(
        "--seam-modes", nargs="+", choices=list(SEAM_MODES), default=list(SEAM_MODES)
    )
    parser.add_argument(
        "--parts", nargs="+", choices=["songs", "long", "seams"], default=["songs", "long", "seams"]
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster.json")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    try:
        import ray
    except ImportError:
        print("bench cluster: Ray is not installed (pip install 'hambametal[cluster]'); skipped")
        return 0
    results: dict[str, Any] = {
        "benchmark": "cluster",
        "conditions": {
            **versions(),
            "ray": ray.__version__,
            "torch_threads_driver": torch.get_num_threads(),
            "worker_threads": "1 each (Ray sets OMP_NUM_THREADS=1 for a 1-CPU actor)",
            "load_average_before": load_average(),
            "model": "tiny (built-in, untrained random weights)",
            "device": "cpu",
            "fps": args.fps,
            "songs": args.songs,
            "seconds_per_song": args.seconds,
            "audio": "clicks at 120 BPM over a chord, 22.05 kHz stereo",
            "encoder": "libx264 veryfast crf 18 + AAC (bridge.outputs.video), on the driver",
            "cluster": "local Ray cluster, 2 CPUs, actors of 1 CPU each",
        },
    }
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        if "songs" in args.parts:
            print("songs ...", flush=True)
            results["songs"] = run_songs(args, work)
        if "long" in args.parts:
            print("long song ...", flush=True)
            results["long_song"] = run_long_song(args, work)
        if "seams" in args.parts:
            print("seams ...", flush=True)
            results["seams"] = {
                "frames": args.seam_frames,
                "chunk_frames": args.seam_chunk,
                "size": "64x64",
                "worst_psnr_db_by_warmup": run_seams(
                    args.seam_frames, args.seam_chunk, 64, work, args.seam_modes
                ),
            }
    results["conditions"]["load_average_after"] = load_average()
    _print(results)
    if not args.no_write:
        write_results(results, args.out)
    return 0


def _print(results: dict[str, Any]) -> None:
    for size, row in results.get("songs", {}).items():
        single, one, two = row["single_process"], row["cluster_1_worker"], row["cluster_2_worker"]
        print(f"\n| {size} | single process | cluster, 1 worker | cluster, 2 workers |")
        print("|---|---|---|---|")
        print(f"| fps | {single['fps']:.1f} | {one['fps']:.1f} | {two['fps']:.1f} |")
        print(
            f"| start-up (s) | model {single['model_load_s']} | ray {row['ray_init_s']} + pool "
            f"{one['pool_ready_s']} | pool {two['pool_ready_s']} |"
        )
        print(
            f"| per song | encode+mux {row['encode_mux_s_per_song']} s | overhead "
            f"{row['per_song_overhead_s']} s | |"
        )
    long = results.get("long_song")
    if long:
        print(
            f"\nlong song: {long['frames']} frames, {long['chunks']} chunks, "
            f"1 worker {long['1_worker']['fps']:.1f} fps, 2 workers {long['2_worker']['fps']:.1f} "
            f"fps; worst seam PSNR {long['seam_worst_psnr_db']}"
        )
    seams = results.get("seams", {}).get("worst_psnr_db_by_warmup", {})
    if seams:
        print("\n| seam: worst PSNR (dB) at the rule's warm-up | rule | quiet | random energy |")
        print("|---|---|---|---|")
        for mode, row in seams.items():
            rule = row["rule_warmup_frames"]
            key = str(rule) if rule is not None else "48"
            quiet, loud = row["quiet (energy 0-0.05)"][key], row["random energy"][key]
            print(
                f"| {mode} | {rule if rule is not None else 'not split (48 tried)'} | {quiet} | {loud} |"
            )


if __name__ == "__main__":
    raise SystemExit(main())

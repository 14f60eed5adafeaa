"""`hamba render --cluster` on this machine: throughput with 1 and 2 workers, per-song costs, seams.

Three parts, all on the built-in tiny model (untrained random weights) on the CPU:

1. **Songs** (``--sizes``, default 128x128 at 24 fps): ``--songs`` synthetic songs (clicks over
   a chord, ``--seconds`` each) rendered to mp4 with their audio, the way `hamba render` does:
   the single-process path (:func:`bridge.offline.render_songs`'s loop: one conductor, a
   :class:`~bridge.offline.SongVideo` per song), in a process of its own set up like the CLI
   (``OMP_WAIT_POLICY=PASSIVE``) with 2 torch threads (the default here) and with 1 (what each
   worker gets); and the cluster path (:func:`bridge.cluster.render.render_to_files`) with 1
   and 2 workers of one pool on a local Ray cluster of 2 CPUs. ``--rounds`` alternating rounds,
   medians; every path warm when timed (its unet traced). Timed apart: starting Ray
   (``ray.init``), starting the pool (actors up, the model loaded in each), the render itself
   (frames / wall time, the driver's H.264 + AAC encoding included, as a user waits for it),
   and the encode + mux of one song alone (its frames rendered beforehand), which both paths
   pay. The per-song overhead of the cluster path is ``(cluster render with 1 worker -
   single-process render with 1 thread) / songs``.
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
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from benchmarks.bench_engine import RESULTS, load_average, versions, write_results
from engine.config import PipelineConfig
from engine.frame import Frame
from tests.bridge.cluster.support import local_cluster
from tests.bridge.outputs.patterns import psnr
from tests.engine.synthetic import make_features

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


# part 1: songs to mp4, single process against the cluster


def single_process(config: PipelineConfig, songs: Sequence[Any], out: Path) -> dict[str, Any]:
    """`hamba render` without --cluster: one conductor, each song through a SongVideo."""
    from bridge.offline import SongVideo
    from engine.render import Conductor

    began = time.perf_counter()
    conductor = Conductor.from_config(config)
    conductor.stream.base.load_model()
    load = time.perf_counter() - began
    # warm, as the cluster's workers are when timed: the unet is traced on the second frame
    for _ in conductor.render_span(songs[0].features, 0, 4):
        pass
    width, height, fps = config.inference.width, config.inference.height, config.audio.fps
    began = time.perf_counter()
    frames = 0
    for song in songs:
        video = SongVideo(out / song.target.name, song.audio, width, height, fps)
        video.write(conductor.render_features(song.features))
        video.commit()
        frames += song.features.num_frames
    seconds = time.perf_counter() - began
    return {"model_load_s": load, "render_s": seconds, "fps": frames / seconds}


def _single_child(args: argparse.Namespace, size: int, threads: int, work: Path) -> dict[str, Any]:
    """The single-process path in a process of its own, set up as `hamba render` sets it up
    (OMP_WAIT_POLICY=PASSIVE before torch loads), with ``threads`` torch threads."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_cluster",
        "--single-child",
        str(size),
        str(threads),
        str(work),
        "--fps",
        str(args.fps),
        "--songs",
        str(args.songs),
        "--seconds",
        str(args.seconds),
    ]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _songs(args: argparse.Namespace, config: PipelineConfig, work: Path) -> list[Any]:
    from bridge.cluster.render import analyse_songs

    files = [song_audio(work / f"song{i}.wav", args.seconds, i) for i in range(args.songs)]
    return analyse_songs(config, files, work / "out")


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


def _start_pool(ray: Any, config: PipelineConfig, workers: int) -> tuple[Any, float]:
    from bridge.cluster.pool import WorkerPool

    began = time.perf_counter()
    pool = WorkerPool(ray, config, workers=workers)
    return pool, time.perf_counter() - began


def cluster_songs(
    pool: Any, config: PipelineConfig, songs: Sequence[Any], out: Path, workers: int
) -> dict[str, Any]:
    """`hamba render --cluster` on a started pool, using ``workers`` of its workers."""
    from bridge.cluster.progress import ClusterProgress
    from bridge.cluster.render import SongFile, render_to_files
    from bridge.options import RenderOptions

    targets = [SongFile(s.audio, s.features, out / s.target.name) for s in songs]
    total = sum(s.features.num_frames for s in songs)
    bar = ClusterProgress(total, len(songs), disable=True)
    options = RenderOptions(cluster="local", workers=workers)
    began = time.perf_counter()
    render_to_files(pool, config, targets, options, bar)
    seconds = time.perf_counter() - began
    return {"render_s": seconds, "fps": total / seconds, "worker_fps": bar.worker_fps()}


def _summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds, and every round's fps."""
    summary: dict[str, Any] = {
        key: round(statistics.median(run[key] for run in runs), 3)
        for key in runs[0]
        if isinstance(runs[0][key], float)
    }
    summary["fps_rounds"] = [round(run["fps"], 1) for run in runs]
    return summary


def run_songs(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for size in args.sizes:
        config = tiny_config(size, args.fps, work / "cache")
        songs = _songs(args, config, work)
        frames = sum(s.features.num_frames for s in songs)
        row: dict[str, Any] = {"frames": frames}
        singles: dict[int, list[dict[str, Any]]] = {2: [], 1: []}
        for _ in range(args.rounds):
            for threads in singles:
                singles[threads].append(_single_child(args, size, threads, work))
        row["single_process"] = {
            f"{threads}_torch_threads": _summary(runs) for threads, runs in singles.items()
        }
        with tempfile.TemporaryDirectory(dir=work) as out:
            row["encode_mux_s_per_song"] = round(
                encode_mux_per_song(config, songs[0], Path(out)), 3
            )
        with local_cluster(2) as (ray, isolated, started):
            row["ray_init_s"] = round(started, 2)
            row["private_network_namespace"] = isolated
            one, ready_one = _start_pool(ray, config, 1)
            one.close()
            pool, ready_two = _start_pool(ray, config, 2)
            row["pool_ready_s"] = {
                "1_worker": round(ready_one, 2),
                "2_workers": round(ready_two, 2),
            }
            row["model_load_s_per_worker"] = [
                round(w.load_seconds, 2) for w in pool.workers.values()
            ]
            clusters: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
            try:
                with tempfile.TemporaryDirectory(dir=work) as out:
                    cluster_songs(pool, config, songs[:2], Path(out), 2)  # both workers warm
                for _ in range(args.rounds):
                    for workers in clusters:
                        with tempfile.TemporaryDirectory(dir=work) as out:
                            clusters[workers].append(
                                cluster_songs(pool, config, songs, Path(out), workers)
                            )
            finally:
                pool.close()
        for workers, runs in clusters.items():
            row[f"cluster_{workers}_worker"] = {
                **_summary(runs),
                "worker_fps_last_round": {
                    k: round(v, 1) for k, v in runs[-1]["worker_fps"].items()
                },
            }
        single = row["single_process"]["1_torch_threads"]
        cluster_one = row["cluster_1_worker"]
        row["per_song_overhead_s"] = round(
            (cluster_one["render_s"] - single["render_s"]) / len(songs), 3
        )
        row["speedup_2_vs_1_worker"] = round(row["cluster_2_worker"]["fps"] / cluster_one["fps"], 2)
        results[f"{size}x{size}"] = row
    return {"by_size": results}


# part 2: one long song in chunks, through Ray


def run_long_song(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from bridge.cluster.plan import warmup_frames
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
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    renders: list[list[np.ndarray]] = []
    with local_cluster(2) as (ray, _isolated, _started):
        pool, _ready = _start_pool(ray, config, 2)
        try:
            short = make_features(24, energy=np.zeros(24), seed=1)
            warm = [_Collect(), _Collect()]
            pool.render([short, short], warm.__getitem__)  # both workers warm
            for _ in range(args.rounds):
                for workers in runs:
                    sinks = [_Collect()]
                    bar = ClusterProgress(features.num_frames, 1, disable=True)
                    began = time.perf_counter()
                    chunks = pool.render(
                        [features],
                        sinks.__getitem__,
                        chunk_seconds=args.chunk_seconds,
                        progress=bar,
                        workers=workers,
                    )
                    seconds = time.perf_counter() - began
                    runs[workers].append(
                        {"render_s": seconds, "fps": features.num_frames / seconds}
                    )
                    renders.append(sinks[0].images)
        finally:
            pool.close()
    images = renders[0]
    row["chunks"] = len(chunks)
    row["seam_worst_psnr_db"] = {
        str(c.start): _finite(min(psnr(images[i], whole[i]) for i in range(c.start, c.stop)))
        for c in chunks[1:]
    }
    row["frames_identical_across_runs_and_worker_counts"] = all(
        all(np.array_equal(a, b) for a, b in zip(images, other, strict=True))
        for other in renders[1:]
    )
    for workers, done in runs.items():
        row[f"{workers}_worker"] = _summary(done)
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
            features = make_features(frames, energy=energy, seed=1)
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


def run_seam_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    return {
        "frames": args.seam_frames,
        "chunk_frames": args.seam_chunk,
        "size": "64x64",
        "worst_psnr_db_by_warmup": run_seams(
            args.seam_frames, args.seam_chunk, 64, work, args.seam_modes
        ),
    }


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
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster.json")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--single-child", nargs=3, metavar=("SIZE", "THREADS", "WORK"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.single_child is not None:
        size, threads, work = (
            int(args.single_child[0]),
            int(args.single_child[1]),
            Path(args.single_child[2]),
        )
        torch.set_num_threads(threads)
        config = tiny_config(size, args.fps, work / "cache")
        with tempfile.TemporaryDirectory(dir=work) as out:
            print(json.dumps(single_process(config, _songs(args, config, work), Path(out))))
        return 0
    try:
        import ray
    except ImportError:
        print("bench cluster: Ray is not installed (pip install 'hambametal[cluster]'); skipped")
        return 0
    # a run of some parts keeps the other parts' last figures
    results: dict[str, Any] = (
        json.loads(args.out.read_text()) if args.out.is_file() and not args.no_write else {}
    )
    results.update(
        {
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
                "rounds": args.rounds,
                "parts_run": args.parts,
            },
        }
    )
    parts = {"songs": run_songs, "long_song": run_long_song, "seams": run_seam_part}
    names = {"songs": "songs", "long": "long_song", "seams": "seams"}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for part in args.parts:
            name = names[part]
            print(f"{name} ...", flush=True)
            when = {"date": versions()["date"], "load_average_before": load_average()}
            results[name] = parts[name](args, work)
            results[name]["measured"] = {**when, "load_average_after": load_average()}
    results["conditions"]["load_average_after"] = load_average()
    _print(results)
    if not args.no_write:
        write_results(results, args.out)
    return 0


def _print(results: dict[str, Any]) -> None:
    for size, row in results.get("songs", {}).get("by_size", {}).items():
        singles = row["single_process"]
        one, two = row["cluster_1_worker"], row["cluster_2_worker"]
        print(f"\n{size}, {row['frames']} frames, medians of {results['conditions']['rounds']}:")
        print("| single process, 2 threads | 1 thread | cluster, 1 worker | 2 workers |")
        print("|---|---|---|---|")
        print(
            f"| {singles['2_torch_threads']['fps']:.1f} fps | {singles['1_torch_threads']['fps']:.1f} fps "
            f"| {one['fps']:.1f} fps | {two['fps']:.1f} fps |"
        )
        print(
            f"ray.init {row['ray_init_s']} s, pool ready {row['pool_ready_s']}, encode+mux "
            f"{row['encode_mux_s_per_song']} s/song, per-song overhead {row['per_song_overhead_s']} s"
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

"""The live loop's own cost: the real daemon, a model that costs nothing or a fixed time.

``bridge.daemon.Daemon`` runs as ``hamba run`` does (music from a file, the music clock, the
conductor with its prompt cache, prompt blend, latent walk and temporal coherence, the OSC
server), at 512x512 RGBA with the ``shm`` and ``ndi`` outputs (NDI on loopback) and OSC
feedback to a UDP listener on loopback, with the measuring models instead of a diffusion model:

- ``null``: the render costs nothing; the clock asks for 1,000 frames a second. What the loop
  sustains is published frames per second (drops counted), and the main thread's own work per
  frame (plan, launch, publish, feedback, status; median and p99);
- ``null-fixed`` at 3 ms a frame, off the Python thread (as a GPU renders): the pipelined loop
  against the sequential one, the clock again at 1,000 frames a second so that the loop, not
  the clock, sets the pace (an ideal pipeline publishes 333 frames a second);
- the main thread's work for one frame stage by stage (music state, plan, launch, wait,
  publish, feedback), without the clock (:func:`loop_parts`: where the trims were aimed);
- the shared-memory writer's cost per frame at 512x512 and 1024x1024, and of the CRC-32 in it
  (layout version 2).

Cases alternate within each of ``--repeats`` rounds, so load from other processes falls on all
of them alike; the load averages are recorded. ``--profile`` runs one null case under cProfile
and prints where the main thread's time goes.

Run: ``.venv/bin/python -m benchmarks.bench_loop [--seconds S] [--repeats N] [--out PATH]``.
Writes ``benchmarks/results/loop.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import logging
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.bench_e2e import SAMPLE_RATE, click_audio
from benchmarks.bench_engine import RESULTS, load_average, versions, write_results

DEFAULT_OUT = RESULTS / "loop.json"
SIZE = 512
CLOCK_FPS = 1000.0
FIXED_MS = 3.0


# a feedback receiver in its own process, as TouchDesigner or Resolume would be: counts the
# datagrams until its stdin closes, then prints the count
_LISTENER = """
import socket, sys, threading
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
sock.settimeout(0.2)
print(sock.getsockname()[1], flush=True)
count, done = 0, threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
while not done.is_set():
    try:
        sock.recv(65536)
        count += 1
    except TimeoutError:
        pass
print(count, flush=True)
"""


class FeedbackListener:
    """A UDP receiver of the daemon's feedback on loopback, in a separate process."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _LISTENER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self.port = int(self._proc.stdout.readline())
        self.datagrams = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop the receiver; ``datagrams`` is then what it received."""
        out, _ = self._proc.communicate("", timeout=10)
        self.datagrams = int(out.split()[-1])


@contextmanager
def ndi_on_loopback() -> Iterator[None]:
    """NDI announces and finds sources on 127.0.0.1 only (docs: NOTES.md), for this process."""
    with tempfile.TemporaryDirectory() as folder:
        config = {"ndi": {"networks": {"ips": "127.0.0.1", "discovery": ""}}}
        Path(folder, "ndi-config.v1.json").write_text(json.dumps(config))
        saved = os.environ.get("NDI_CONFIG_DIR")
        os.environ["NDI_CONFIG_DIR"] = folder
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop("NDI_CONFIG_DIR", None)
            else:
                os.environ["NDI_CONFIG_DIR"] = saved


class GcPauses:
    """Python's garbage-collector pauses while the context is open (every thread's)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[int(info["generation"])].append(time.perf_counter() - self._started)

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            f"gen{g}": {"count": len(p), "max_ms": max(p, default=0.0) * 1000.0}
            for g, p in self.pauses.items()
        }


def percentile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        nan = float("nan")
        return {"count": 0, "median": nan, "mean": nan, "p99": nan, "max": nan}
    return {
        "count": len(ordered),
        "median": statistics.median(ordered),
        "mean": statistics.fmean(ordered),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1],
    }


def synthetic_music(seconds: float, fps: float) -> Any:
    """Precomputed features of a 120 BPM song (no audio analysis: for machines without
    librosa), as a music source that loops."""
    import numpy as np

    from bridge.music import FeatureMusic
    from engine.audio.types import AudioFeatures

    frames = round(seconds * fps)
    rng = np.random.default_rng(0)
    chroma = rng.random((12, frames), dtype=np.float32)
    energy = (0.5 + 0.5 * np.sin(np.arange(frames) * 2 * np.pi / fps)).astype(np.float32)
    zeros = np.zeros(frames, dtype=np.float32)
    features = AudioFeatures(
        path="synthetic",
        duration=frames / fps,
        fps=fps,
        sample_rate=22050,
        tempo=120.0,
        beat_frames=np.arange(0, frames, round(fps / 2)),
        onset=zeros,
        energy=energy,
        chroma_cq=chroma / chroma.max(axis=0, keepdims=True),
        low=zeros,
        mid=zeros,
        high=zeros,
    )
    return FeatureMusic(features, loop=True, name="synthetic 120 BPM")


def run_case(
    song: Path | None,
    work: Path,
    *,
    model: str,
    pipelined: bool,
    seconds: float,
    size: int = SIZE,
    clock_fps: float = CLOCK_FPS,
    render_ms: float = FIXED_MS,
    outputs: Sequence[str] = ("shm", "ndi"),
    device: str = "cpu",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One daemon run; its figures (fps, drops, host work, latency, outputs, feedback).

    ``song`` None: the music is :func:`synthetic_music` (no audio analysis needed).
    """
    from bridge.daemon import Daemon, FrameRecord
    from bridge.options import RunOptions
    from engine.config import PipelineConfig

    config = PipelineConfig().with_overrides(
        {
            "diffusion.model": model,
            "diffusion.device": device,
            "diffusion.null_render_ms": render_ms,
            "inference.width": size,
            "inference.height": size,
            "audio.fps": clock_fps,
            "audio.cache_dir": str(work / "cache"),
            **(overrides or {}),
        }
    )
    listener = FeedbackListener()
    records: list[FrameRecord] = []
    music = synthetic_music(30.0, clock_fps) if song is None else None
    options = RunOptions.model_validate(
        {
            "audio": song,
            "loop": True,
            "outputs": list(outputs),
            "name": f"bench{uuid.uuid4().hex[:8]}",
            "osc_host": "127.0.0.1",
            "osc_port": 0,
            "oscquery_port": None,
            "feedback": [listener.target],
            "duration": seconds,
            "pipelined": pipelined,
        }
    )
    daemon = Daemon(
        config, options, status_stream=io.StringIO(), on_frame=records.append, music=music
    )
    pauses = GcPauses()
    try:
        with pauses:
            stats = daemon.run()
    finally:
        listener.close()
    span = records[-1].clock - records[0].clock if len(records) > 1 else 0.0
    launched = stats.last_index - records[0].index + 1 if records else 0
    output_stats = daemon.output_stats
    return {
        "model": model,
        "loop": "pipelined" if pipelined else "sequential",
        "seconds": seconds,
        "frames": stats.frames,
        "fps": (len(records) - 1) / span if span > 0 else 0.0,
        "dropped": stats.dropped,
        "dropped_share": stats.dropped / max(launched, 1),
        # frames a second the main thread's own work and its waits for the model would allow
        "capacity_fps": 1000.0
        * len(records)
        / max(sum(r.host_ms + r.wait_ms for r in records), 1e-9),
        "errors": stats.errors,
        "host_ms": summarise([r.host_ms for r in records]),
        "wait_ms": summarise([r.wait_ms for r in records]),
        # the frame's latency, and how late it is published against the music it shows (about
        # 0: a file source looks ahead by the measured latency)
        "plan_to_publish_ms": summarise([r.render_ms for r in records]),
        "late_vs_music_ms": summarise([(r.clock - r.time) * 1000.0 for r in records]),
        "outputs": {name: o.as_dict() for name, o in output_stats.items()},
        "gc": pauses.summary(),
        "feedback_datagrams": listener.datagrams,
        "feedback_per_frame": listener.datagrams / max(stats.frames, 1),
    }


CASES: tuple[tuple[str, str, bool], ...] = (
    ("null, pipelined", "null", True),
    ("null, sequential", "null", False),
    ("null-fixed 3 ms, pipelined", "null-fixed", True),
    ("null-fixed 3 ms, sequential", "null-fixed", False),
)


def write_song(folder: Path) -> Path:
    """An 8 s click track at 120 BPM as a WAV file (the daemon analyses it as any song)."""
    import soundfile as sf

    samples, _ = click_audio(8.0)
    song = folder / "clicks.wav"
    sf.write(song, samples, SAMPLE_RATE)
    return song


def run(*, seconds: float = 5.0, repeats: int = 3, size: int = SIZE) -> dict[str, Any]:
    """Every case ``repeats`` times, alternating; the median run of each, and all runs."""
    import torch

    logging.getLogger().setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder, ndi_on_loopback():
        work = Path(folder)
        song = write_song(work)
        load_before = load_average()
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in CASES}
        for _ in range(repeats):
            for name, model, pipelined in CASES:
                row = run_case(song, work, model=model, pipelined=pipelined, seconds=seconds)
                row["load_after"] = load_average()
                runs[name].append(row)
                host = row["host_ms"]["median"]
                print(f"  {name:<30} {row['fps']:8.1f} fps, host p50 {host:.3f} ms", flush=True)
    median_runs = {
        name: sorted(rows, key=lambda r: r["fps"])[len(rows) // 2] for name, rows in runs.items()
    }
    shm = shm_costs()
    with tempfile.TemporaryDirectory() as folder:
        parts = loop_parts(write_song(Path(folder)), Path(folder))
    pipelined = median_runs["null-fixed 3 ms, pipelined"]["fps"]
    sequential = median_runs["null-fixed 3 ms, sequential"]["fps"]
    ideal = 1000.0 / FIXED_MS
    return {
        "cases": median_runs,
        "runs": runs,
        "null_fps": median_runs["null, pipelined"]["fps"],
        "null_host_ms_median": median_runs["null, pipelined"]["host_ms"]["median"],
        "null_host_ms_p99": median_runs["null, pipelined"]["host_ms"]["p99"],
        "fixed_ideal_fps": ideal,
        "fixed_pipelined_fps": pipelined,
        "fixed_sequential_fps": sequential,
        "fixed_pipelined_within_10pct": pipelined >= 0.9 * ideal,
        "fixed_sequential_within_10pct": sequential >= 0.9 * ideal,
        "shm_checksum": shm,
        "main_thread_us": parts,
        "conditions": {
            "size": f"{size}x{size}",
            "format": "RGBA uint8",
            "outputs": ["shm", "ndi (loopback)"],
            "feedback": "1 UDP target on loopback",
            "clock_fps": CLOCK_FPS,
            "fixed_render_ms": FIXED_MS,
            "seconds_per_run": seconds,
            "repeats": repeats,
            "torch_threads": torch.get_num_threads(),
            "load_before": load_before,
            "load_after": load_average(),
            **versions(),
        },
    }


def loop_parts(song: Path, work: Path, *, frames: int = 3000, size: int = SIZE) -> dict[str, Any]:
    """The main thread's work for one frame, stage by stage, as the daemon does it (null model,
    one torch thread, feedback to a listener process, an output group with shm behind it),
    without the clock: median and p99 microseconds per stage, over ``frames`` frames."""
    import torch

    from bridge.music import FileMusic
    from bridge.osc.feedback import FeedbackSender
    from bridge.outputs.base import OutputGroup, create_output
    from engine.config import PipelineConfig
    from engine.render import Conductor

    torch.set_num_threads(1)  # the daemon's setting on a 2-core machine
    config = PipelineConfig().with_overrides(
        {
            "diffusion.model": "null",
            "diffusion.device": "cpu",
            "inference.width": size,
            "inference.height": size,
            "audio.fps": CLOCK_FPS,
            "audio.cache_dir": str(work / "cache"),
        }
    )
    music = FileMusic(song, config.audio, loop=True)
    conductor = Conductor.from_config(config)
    listener = FeedbackListener()
    host, port = listener.target.split(":")
    feedback = FeedbackSender([(host, int(port))])
    group = OutputGroup([create_output("shm", name=f"bench{uuid.uuid4().hex[:8]}")])
    group.open(size, size, CLOCK_FPS)
    stages = ("music state", "plan", "launch", "wait", "publish", "feedback", "frame")
    times: dict[str, list[float]] = {name: [] for name in stages}
    try:
        for index in range(frames + 100):
            t0 = time.perf_counter()
            state = music.state_at(index, index / CLOCK_FPS)
            t1 = time.perf_counter()
            request = conductor.plan(state, index)
            t2 = time.perf_counter()
            pending = conductor.launch(request)
            t3 = time.perf_counter()
            frame = pending.wait()
            t4 = time.perf_counter()
            group.publish(frame.image, frame.index, frame.time)
            t5 = time.perf_counter()
            feedback.send_frame(state, fps=CLOCK_FPS, frame=index)
            t6 = time.perf_counter()
            if index >= 100:  # after the first frames' one-off costs
                marks = (t0, t1, t2, t3, t4, t5, t6)
                for name, start, end in zip(stages, marks, marks[1:], strict=False):
                    times[name].append((end - start) * 1e6)
                times["frame"].append((t6 - t0) * 1e6)
            time.sleep(0.0005)  # let the output's thread run, as the clock would
    finally:
        group.close()
        feedback.close()
        listener.close()
    return {name: summarise(values) for name, values in times.items()}


def shm_costs(sizes: Sequence[int] = (512, 1024), repeats: int = 60) -> dict[str, Any]:
    """The shared-memory writer's publish (copy + CRC-32) and the CRC-32 alone, median ms."""
    import numpy as np

    from bridge.outputs.shm import ShmOutput, slot_checksum

    rows: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for size in sizes:
        frame = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
        stamp = np.zeros(16, np.uint8)
        crc, publish = [], []
        with ShmOutput(f"bench{uuid.uuid4().hex[:8]}") as out:
            out.open(size, size, 30.0)
            for i in range(repeats + 5):
                started = time.perf_counter()
                slot_checksum(stamp, frame)
                middle = time.perf_counter()
                out.publish(frame, i, i / 30.0)
                if i >= 5:
                    crc.append((middle - started) * 1000.0)
                    publish.append((time.perf_counter() - middle) * 1000.0)
        rows[f"{size}x{size}"] = {
            "crc32_ms": statistics.median(crc),
            "publish_ms": statistics.median(publish),
        }
    import zlib

    rows["zlib"] = zlib.ZLIB_RUNTIME_VERSION
    return rows


def profile(*, seconds: float, sort: str = "tottime", limit: int = 30) -> str:
    """cProfile of one null pipelined run: the main thread's functions by own time."""
    with tempfile.TemporaryDirectory() as folder, ndi_on_loopback():
        work = Path(folder)
        song = write_song(work)
        profiler = cProfile.Profile()
        profiler.enable()
        run_case(song, work, model="null", pipelined=True, seconds=seconds)
        profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats(sort).print_stats(limit)
    return text.getvalue()


def print_table(results: dict[str, Any]) -> None:
    print(
        f"{'case':<30} {'fps':>8} {'drops':>7} {'host p50':>9} {'host p99':>9} "
        f"{'capacity':>9} {'plan->publish p50':>18}"
    )
    for name, row in results["cases"].items():
        print(
            f"{name:<30} {row['fps']:>8.1f} {row['dropped_share']:>6.1%} "
            f"{row['host_ms']['median']:>8.3f} {row['host_ms']['p99']:>8.3f} "
            f"{row['capacity_fps']:>9.0f} {row['plan_to_publish_ms']['median']:>17.2f}"
        )
    ideal = results["fixed_ideal_fps"]
    print(
        f"fixed 3 ms: pipelined {results['fixed_pipelined_fps']:.1f}, sequential "
        f"{results['fixed_sequential_fps']:.1f} fps (ideal {ideal:.0f}, 10 % below: "
        f"{0.9 * ideal:.0f})"
    )
    print("main thread per frame, us (median / p99):")
    for name, row in results["main_thread_us"].items():
        print(f"  {name:<12} {row['median']:8.1f} {row['p99']:8.1f}")
    for size, row in results["shm_checksum"].items():
        if isinstance(row, dict):
            print(
                f"shm {size}: CRC-32 {row['crc32_ms']:.3f} ms, publish {row['publish_ms']:.3f} ms"
            )
    print(f"load: {results['conditions']['load_before']} -> {results['conditions']['load_after']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of all cases")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--profile", action="store_true", help="cProfile one null run instead")
    args = parser.parse_args(argv)
    if args.profile:
        print(profile(seconds=args.seconds))
        return 0
    results = run(seconds=args.seconds, repeats=args.repeats)
    print_table(results)
    if not args.no_write:
        write_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Publish cost per frame of each frame output available here, at 512x512 and 1024x1024.

What the render loop pays per frame, measured around ``publish`` (after 5 warm-up frames):

- ``shm``: copy into a shared-memory slot (no reader attached);
- ``ndi_rgba`` / ``ndi_uyvy``: hand the frame to the NDI sender (cyndilib, asynchronous send;
  NDI compresses on its own threads), no receiver; ``ndi_rgba_watched``: the same with a
  receiver on loopback pulling frames, as a VJ tool would;
- ``file_mp4``: H.264 encode (libx264 veryfast, crf 18, or mpeg4) plus AAC audio, the encoder's
  flush counted in ``close_ms``;
- ``png``: PNG encode (PyAV) and write to a temporary folder;
- ``group_publish``: ``OutputGroup.publish`` on the caller's thread, paced at 30 fps, with shm
  and NDI behind it (validation plus queueing; the outputs run on their own threads; what they
  published and dropped is recorded);
- ``validate_float32``: converting a float32 [0, 1] frame to uint8 once (the frame rule).

Frames are smooth gradients with mild noise (sigma 6), like a decoded diffusion image. Writes
``benchmarks/results/outputs.json`` with the conditions.
Run: ``.venv/bin/python -m benchmarks.bench_outputs [--frames N] [--sizes 512 1024] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from bridge.outputs import FramePublisher, OutputGroup, available_outputs, validate_frame
from bridge.outputs.images import PngSequenceOutput
from bridge.outputs.ndi import NdiOutput
from bridge.outputs.shm import ShmOutput
from bridge.outputs.video import VideoFileOutput, video_codec

DEFAULT_OUT = Path(__file__).parent / "results" / "outputs.json"
FPS = 30.0
WARMUP = 5


def natural_frames(size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` RGBA frames: moving gradients plus mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    frames = []
    for i in range(count):
        shift = i / 40
        rgb = np.stack(
            [
                127 + 100 * np.sin(2 * np.pi * (x + shift)),
                127 + 100 * np.cos(2 * np.pi * (y - shift)),
                127 + 100 * np.sin(2 * np.pi * (x + y + shift)),
            ],
            axis=-1,
        )
        rgb += rng.normal(0, 6, rgb.shape).astype(np.float32)
        frame = np.empty((size, size, 4), np.uint8)
        frame[..., :3] = np.clip(rgb, 0, 255)
        frame[..., 3] = 255
        frames.append(frame)
    return frames


def summarise(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    mean = statistics.fmean(ordered)
    return {
        "median_ms": statistics.median(ordered),
        "mean_ms": mean,
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max_ms": ordered[-1],
        "fps_alone": 1000.0 / mean if mean else float("inf"),
    }


def timed_publishes(out: FramePublisher, frames: list[np.ndarray]) -> list[float]:
    """Milliseconds per ``publish`` of an open output, after warm-up frames."""
    for index in range(WARMUP):
        out.publish(frames[index % len(frames)], index, index / FPS)
    samples = []
    for n, frame in enumerate(frames):
        index = WARMUP + n
        started = time.perf_counter()
        out.publish(frame, index, index / FPS)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def timed_close(out: FramePublisher) -> float:
    started = time.perf_counter()
    out.close()
    return (time.perf_counter() - started) * 1000


def time_output(out: FramePublisher, frames: list[np.ndarray], size: int) -> dict[str, Any]:
    """Open, warm up, time each publish, time the close."""
    out.open(size, size, FPS)
    try:
        samples = timed_publishes(out, frames)
    finally:
        close_ms = timed_close(out)
    return {**summarise(samples), "frames": len(frames), "close_ms": close_ms}


@contextmanager
def ndi_viewer(source_name: str) -> Iterator[None]:
    """A loopback NDI receiver pulling frames on a thread while the block runs."""
    import threading

    import cyndilib
    from cyndilib.video_frame import VideoFrameSync

    finder = cyndilib.Finder()
    finder.open()
    end = time.monotonic() + 10
    while source_name not in finder.get_source_names() and time.monotonic() < end:
        finder.wait_for_sources(0.2)
    receiver = cyndilib.Receiver(
        color_format=cyndilib.RecvColorFormat.RGBX_RGBA, bandwidth=cyndilib.RecvBandwidth.highest
    )
    video = VideoFrameSync()
    receiver.frame_sync.set_video_frame(video)
    receiver.set_source(finder.get_source(source_name))
    stop = threading.Event()

    def pull() -> None:
        while not stop.is_set():
            receiver.frame_sync.capture_video()
            if video.xres:
                video.get_array()
            time.sleep(1 / FPS)

    thread = threading.Thread(target=pull, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        receiver.disconnect()
        finder.close()


def bench_ndi_watched(frames: list[np.ndarray], size: int) -> dict[str, Any]:
    out = NdiOutput(f"bench-watched-{uuid.uuid4().hex[:6]}")
    out.open(size, size, FPS)
    try:
        out.publish(frames[0], 0, 0.0)  # something to find
        assert out.source_name is not None
        with ndi_viewer(out.source_name):
            samples = timed_publishes(out, frames)
            receivers = out.connections
    finally:
        close_ms = timed_close(out)
    return {
        **summarise(samples),
        "frames": len(frames),
        "close_ms": close_ms,
        "receivers": receivers,
    }


def bench_group(frames: list[np.ndarray], size: int) -> dict[str, Any]:
    """Caller-side cost of ``OutputGroup.publish``, paced at ``FPS`` like a render loop."""
    group = OutputGroup(
        [ShmOutput(f"bench{uuid.uuid4().hex[:8]}"), NdiOutput("bench-group")],
        queue_size=2,
    )
    group.open(size, size, FPS)
    samples = []
    start = time.perf_counter()
    for index, frame in enumerate(frames):
        time.sleep(max(0.0, start + index / FPS - time.perf_counter()))
        started = time.perf_counter()
        group.publish(frame, index, index / FPS)
        samples.append((time.perf_counter() - started) * 1000)
    close_ms = timed_close(group)
    stats = {name: s.as_dict() for name, s in group.stats().items()}
    return {**summarise(samples), "frames": len(frames), "close_ms": close_ms, "outputs": stats}


def bench_validate_float(frames: list[np.ndarray]) -> dict[str, float]:
    floats = [f.astype(np.float32) / 255 for f in frames[:20]]
    samples = []
    for frame in floats:
        started = time.perf_counter()
        validate_frame(frame)
        samples.append((time.perf_counter() - started) * 1000)
    return summarise(samples)


def run(frames: int = 60, sizes: tuple[int, ...] = (512, 1024)) -> dict[str, Any]:
    """Measure every output available here at each size; figures plus conditions."""
    from engine.profiling.profiler import conditions

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ndi_config = tmp / "ndi"
        ndi_config.mkdir()
        (ndi_config / "ndi-config.v1.json").write_text(
            json.dumps({"ndi": {"networks": {"ips": "127.0.0.1", "discovery": ""}}})
        )
        # loopback discovery for the watched run (NDI reads it at its first object)
        os.environ.setdefault("NDI_CONFIG_DIR", str(ndi_config))
        tone = tmp / "tone.wav"
        t = np.arange(int(48000 * (frames + 2 * WARMUP) / FPS)) / 48000
        sf.write(tone, 0.3 * np.sin(2 * np.pi * 220 * t), 48000)
        available = {row.kind for row in available_outputs() if row.available}
        cases: dict[str, Callable[[int], FramePublisher]] = {}
        if "shm" in available:
            cases["shm"] = lambda s: ShmOutput(f"bench{uuid.uuid4().hex[:8]}")
        if "ndi" in available:
            cases["ndi_rgba"] = lambda s: NdiOutput(f"bench-rgba-{s}")
            cases["ndi_uyvy"] = lambda s: NdiOutput(f"bench-uyvy-{s}", pixel_format="uyvy")
        if "file" in available:
            cases["file_mp4"] = lambda s: VideoFileOutput(tmp / f"bench{s}.mp4", audio_path=tone)
        if "png" in available:
            cases["png"] = lambda s: PngSequenceOutput(tmp / f"png{s}")
        results: dict[str, Any] = {}
        for size in sizes:
            clip = natural_frames(size, frames)
            per_size: dict[str, Any] = {
                name: time_output(make(size), clip, size) for name, make in cases.items()
            }
            if "ndi" in available:
                per_size["ndi_rgba_watched"] = bench_ndi_watched(clip, size)
                per_size["group_publish"] = bench_group(clip, size)
            per_size["validate_float32"] = bench_validate_float(clip)
            results[f"{size}x{size}"] = per_size
    return {
        "benchmark": "outputs",
        "conditions": {
            **conditions(),
            "frames_per_case": frames,
            "warmup_frames": WARMUP,
            "fps": FPS,
            "video_codec": video_codec(),
            "frame_content": "moving gradients + gaussian noise sigma 6, RGBA uint8",
        },
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="timed frames per output")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON goes")
    args = parser.parse_args(argv)
    report = run(args.frames, tuple(args.sizes))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for size, cases in report["results"].items():
        for name, fig in cases.items():
            print(
                f"{size:>9} {name:<18} median {fig['median_ms']:8.3f} ms"
                f"  p95 {fig['p95_ms']:8.3f} ms  ({fig['fps_alone']:8.1f} fps alone)"
            )
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

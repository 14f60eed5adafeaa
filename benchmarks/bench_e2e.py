"""The whole live path, end to end: audio blocks in, frames out through shared memory, OSC in.

The parts are the daemon's (:class:`bridge.daemon.Daemon` builds the same ones, minus the clock
and the sound card): a :class:`~engine.audio.streaming.StreamingAnalyzer` fed a synthetic click
track (120 BPM) block by block, the :class:`~engine.render.Conductor` over a
:class:`~engine.diffusion.stream.StreamDiffusionPipeline` on the built-in tiny model (untrained
random weights), an :class:`~bridge.outputs.group.OutputGroup` with the ``shm`` output, a
:class:`~bridge.osc.feedback.FeedbackSender` sending to a UDP listener on loopback and an
:class:`~bridge.osc.server.OscServer` on 127.0.0.1 (a free port) over the conductor's
:class:`~engine.controls.ControlStore`. Torch gets the daemon's thread count (all cores but
one, which is left to the audio, OSC and output threads). For each size:

1. **Throughput**: frames back to back, no pacing, after 5 warm-up frames (the unet is traced
   on the second). Stages come from the process profiler: the conductor's own (``prompt``,
   ``latent``, ``generate``), and around the calls made here ``audio`` (the pushes that
   completed the frame's music state), ``publish`` (``OutputGroup.publish``: validation and
   queueing; the shm copy runs on the output's thread), ``feedback`` (``send_frame``) and
   ``frame`` (the whole iteration). ``generate``'s parts are timed apart on the same engine
   and inputs: the unet step (``denoise``), the VAE decode, the ``uint8`` conversion
   (``rgba_uint8``) and the copy into a numpy frame. At the end the newest frame is read back
   from shared memory (a real reader) and compared with the one published.
2. **Audio-to-frame latency**, live input, in real time: a thread pushes the click track block
   by block at the audio clock (512 samples at 22.05 kHz: a block every 23 ms) and stamps each
   music state with the arrival time of the block that completed it; the render loop, paced to
   the video clock like the daemon's live path (no look-ahead), renders the newest state. A
   state's latency runs from its block's arrival (before ``push``) to the return of
   ``OutputGroup.publish`` for the first frame that used it. The click latency runs from the
   arrival of the block holding a click's first sample to the first published frame whose
   music covers the click (a state covers the audio of one video frame, so this adds up to a
   frame period of accumulation).
3. **OSC-to-frame latency**: a python-osc UDP client sends the real server ``/hamba/prompt``
   (a new prompt each time, so its encoding is included), then ``/hamba/pause`` toggled on and
   off (on shows the held frame at once, off waits for a rendered one), each at a random
   moment 2.5 to 5 frame times after the last, while the render loop (``Conductor.plan`` then
   ``execute``, paced to the video clock) runs on its own thread. A message's latency runs
   from the send to the return of ``publish`` for the first frame whose planned controls carry
   the new value.
4. **Memory**: the process's resident memory after loading and at its peak (``ru_maxrss``,
   cumulative over the sizes run so far).

Run: ``python -m benchmarks.bench_e2e`` (``--help``) or ``hamba bench e2e``. Writes
``benchmarks/results/e2e.json`` (or ``--out``) with the conditions, prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from benchmarks.bench_engine import RESULTS, load_average, versions, write_results

if TYPE_CHECKING:
    from bridge.osc.feedback import FeedbackSender
    from bridge.osc.server import OscServer
    from bridge.outputs.group import OutputGroup
    from engine.audio.streaming import StreamingAnalyzer
    from engine.render import Conductor

FPS = 24.0
SAMPLE_RATE = 22050
BLOCK = 512
BPM = 120.0
WARMUP_FRAMES = 5
PART_REPEATS = 10
OSC_KEYS = ("/hamba/prompt", "/hamba/pause on", "/hamba/pause off")


# -- the signal --------------------------------------------------------------------------------


def click_audio(
    seconds: float, *, bpm: float = BPM, sr: int = SAMPLE_RATE
) -> tuple[npt.NDArray[np.float32], list[int]]:
    """Mono float32 clicks (4 ms noise bursts) on every beat from 0.5 s; samples, click starts."""
    samples = np.zeros(round(seconds * sr), dtype=np.float32)
    starts = list(range(round(0.5 * sr), samples.size, round(60.0 / bpm * sr)))
    length = round(0.004 * sr)
    burst = np.random.default_rng(7).uniform(-0.9, 0.9, length).astype(np.float32)
    burst *= np.linspace(1.0, 0.0, length, dtype=np.float32)
    for start in starts:
        end = min(start + length, samples.size)
        samples[start:end] = burst[: end - start]
    return samples, starts


def blocks(samples: npt.NDArray[np.float32]) -> Iterator[npt.NDArray[np.float32]]:
    """The signal in live-input blocks (a partial last block is left out)."""
    for start in range(0, samples.size - BLOCK + 1, BLOCK):
        yield samples[start : start + BLOCK]


# -- the rig -----------------------------------------------------------------------------------


@dataclass
class Rig:
    """The live path's parts for one frame size; :meth:`close` releases every one."""

    size: int
    conductor: Conductor
    outputs: OutputGroup
    feedback: FeedbackSender
    server: OscServer
    shm_name: str
    sink: socket.socket
    received: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _drain: threading.Thread | None = None

    def start_sink(self) -> None:
        """Drain the feedback datagrams (a controller that listens), counting them."""

        def drain() -> None:
            while not self._stop.is_set():
                try:
                    self.sink.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                self.received += 1

        self.sink.settimeout(0.05)
        self._drain = threading.Thread(target=drain, name="bench-feedback-sink", daemon=True)
        self._drain.start()

    def close(self) -> None:
        self._stop.set()
        if self._drain is not None:
            self._drain.join(timeout=1.0)
        self.server.stop()
        self.feedback.close()
        self.outputs.close()
        self.sink.close()


def build_rig(size: int, steps: int, device: str) -> Rig:
    """Model, stream wrapper, conductor, shm output, feedback and OSC server, all started."""
    from bridge.osc.feedback import FeedbackSender
    from bridge.osc.server import OscServer
    from bridge.outputs.base import OutputGroup, create_output
    from engine.config import PipelineConfig
    from engine.diffusion.base import create_pipeline
    from engine.diffusion.stream import StreamDiffusionPipeline
    from engine.render import Conductor

    config = PipelineConfig.model_validate(
        {
            "audio": {"fps": FPS, "sample_rate": SAMPLE_RATE, "block_size": BLOCK},
            "diffusion": {"model": "tiny", "device": device},
            "inference": {"height": size, "width": size, "num_inference_steps": steps},
        }
    )
    base = create_pipeline(config.diffusion, config.inference)
    base.load_model()
    conductor = Conductor(StreamDiffusionPipeline(base, config.stream), config)
    shm_name = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    outputs = OutputGroup([create_output("shm", name=shm_name)])
    outputs.open(size, size, FPS)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    feedback = FeedbackSender([("127.0.0.1", sink.getsockname()[1])])
    server = OscServer(conductor.controls, "127.0.0.1", 0, feedback=feedback)
    server.start()
    rig = Rig(size, conductor, outputs, feedback, server, shm_name, sink)
    rig.start_sink()
    return rig


def analyzer() -> StreamingAnalyzer:
    """A streaming analyzer for the click track's rate and blocks."""
    from engine.audio.streaming import StreamingAnalyzer
    from engine.config import AudioConfig

    return StreamingAnalyzer(
        AudioConfig(fps=FPS, sample_rate=SAMPLE_RATE, block_size=BLOCK), SAMPLE_RATE
    )


# -- 1. throughput -----------------------------------------------------------------------------


def throughput(rig: Rig, frames: int) -> dict[str, Any]:
    """Frames back to back through the whole path; fps and the profiler's stages."""
    from bridge.outputs.shm import ShmFrameReader
    from engine.profiling.profiler import get_profiler

    profiler = get_profiler()
    audio = analyzer()
    source = blocks(click_audio((WARMUP_FRAMES + frames) / FPS + 1.0)[0])
    published: npt.NDArray[np.uint8] | None = None
    index = -1
    started = 0.0
    for index in range(WARMUP_FRAMES + frames):
        if index == WARMUP_FRAMES:
            profiler.reset()
            started = time.perf_counter()
        with profiler.profile("frame"):
            with profiler.profile("audio"):
                states: list[Any] = []
                while not states:
                    states = audio.push(next(source))
            state = states[-1]
            frame = rig.conductor.render(state, index)
            with profiler.profile("publish"):
                rig.outputs.publish(frame.image, frame.index, frame.time)
            with profiler.profile("feedback"):
                rig.feedback.send_frame(state, fps=FPS, frame=index)
        published = frame.image
    wall = time.perf_counter() - started
    summary = profiler.summary()
    rig.outputs.flush(5.0)
    with ShmFrameReader(rig.shm_name) as reader:
        shown = reader.read()
    read_back = (
        shown is not None
        and shown.index == index
        and published is not None
        and np.array_equal(shown.image, published)
    )
    return {
        "frames": frames,
        "wall_s": wall,
        "fps": frames / wall,
        "stages": summary["stages"],
        "shm_read_back_matches": read_back,
        "output_stats": {k: v.as_dict() for k, v in rig.outputs.stats().items()},
        "feedback_datagrams_received": rig.received,
    }


def generate_parts(rig: Rig) -> dict[str, dict[str, float]]:
    """``generate``'s parts, each timed apart on the engine and inputs of the live path."""
    from engine.diffusion.host import HostTransfer
    from engine.diffusion.sd15 import SD15Pipeline, rgba_uint8
    from engine.profiling.profiler import Profiler

    base = rig.conductor.stream.base
    if not isinstance(base, SD15Pipeline):
        raise TypeError(f"generate's parts are those of SD15Pipeline, not {type(base).__name__}")
    latent = torch.randn(base.get_latent_shape(), generator=torch.Generator().manual_seed(1))
    embeds = rig.conductor.stream.encode_prompt(rig.conductor.controls.values.prompt)
    with torch.inference_mode():
        clean = base.denoise(latent, embeds).to(base.dtype)
        vae = base.pipe.vae
        image = vae.decode(clean, return_dict=False)[0]
        frame = rgba_uint8(image)
    host = HostTransfer(base.device)
    parts: dict[str, Callable[[], object]] = {
        "unet step (denoise)": lambda: base.denoise(latent, embeds),
        "vae decode": lambda: vae.decode(clean, return_dict=False),
        "uint8 conversion (rgba_uint8)": lambda: rgba_uint8(image),
        "copy to a numpy frame": lambda: host.fetch(frame, reused=True),
    }
    timer = Profiler(enabled=True, device=base.device)
    with torch.inference_mode():
        for _ in range(2):  # warm-up, alternating like the timed rounds
            for fn in parts.values():
                fn()
        for _ in range(PART_REPEATS):
            for name, fn in parts.items():
                with timer.profile(name):
                    fn()
    stages = timer.summary()["stages"]
    return {name: {k: stages[name][k] for k in ("mean_ms", "p50_ms", "p95_ms")} for name in parts}


# -- paced render loops ------------------------------------------------------------------------


class Pacer:
    """Waits for the next video frame's due time; a late frame is not waited for (dropped)."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.start = time.perf_counter()
        self.next = 0

    def wait(self, stop: threading.Event) -> bool:
        """Sleep until the next frame is due; False once ``stop`` is set."""
        now = time.perf_counter()
        due_index = max(self.next, int((now - self.start) / self.period))
        due = self.start + due_index * self.period
        self.next = due_index + 1
        if due > now and stop.wait(due - now):
            return False
        return not stop.is_set()


def stats_ms(samples: Sequence[float]) -> dict[str, float | int]:
    """Count, mean, median, p95 and max of durations in seconds, in milliseconds."""
    if not samples:
        return {"count": 0}
    ms = np.asarray(samples, dtype=np.float64) * 1000.0
    return {
        "count": int(ms.size),
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
    }


# -- 2. audio to frame -------------------------------------------------------------------------


def audio_latency(rig: Rig, seconds: float) -> dict[str, Any]:
    """Live input in real time: block arrival to the frame that used its music state."""
    samples, click_starts = click_audio(seconds + 0.5)
    audio = analyzer()
    arrivals: dict[int, float] = {}  # state frame -> arrival of the block that completed it
    block_arrivals: list[float] = []
    stop = threading.Event()
    block_s = BLOCK / SAMPLE_RATE

    def feed() -> None:
        start = time.perf_counter()
        for k in range(samples.size // BLOCK):
            due = start + k * block_s
            delay = due - time.perf_counter()
            if delay > 0 and stop.wait(delay):
                return
            arrived = time.perf_counter()
            block_arrivals.append(arrived)
            for state in audio.push(samples[k * BLOCK : (k + 1) * BLOCK]):
                arrivals[state.frame] = arrived
        stop.set()

    rig.conductor.reset()
    feeder = threading.Thread(target=feed, name="bench-audio-feed", daemon=True)
    pacer = Pacer(FPS)
    shown: dict[int, float] = {}  # state frame -> when its first frame left publish
    rendered = 0
    feeder.start()
    while pacer.wait(stop):
        state = audio.latest()
        frame = rig.conductor.render(state, rendered)
        rig.outputs.publish(frame.image, frame.index, frame.time)
        done = time.perf_counter()
        rendered += 1
        if state.frame in arrivals:
            shown.setdefault(state.frame, done)
    feeder.join()
    state_latency = [shown[f] - arrivals[f] for f in sorted(shown)]
    click_latency = []
    for start in click_starts:
        block_index = start // BLOCK
        if block_index >= len(block_arrivals):
            break
        covering = int(start / SAMPLE_RATE * FPS)  # the video frame whose audio holds the click
        later = [f for f in shown if f >= covering]
        if later:
            click_latency.append(shown[min(later)] - block_arrivals[block_index])
    return {
        "seconds": seconds,
        "frames_rendered": rendered,
        "states_made": len(arrivals),
        "states_shown": len(shown),
        "state_to_frame": stats_ms(state_latency),
        "click_to_frame": stats_ms(click_latency),
    }


# -- 3. OSC to frame ---------------------------------------------------------------------------


def osc_latency(rig: Rig, trials: int, spacing_s: float, seed: int = 3) -> dict[str, Any]:
    """Messages from a real UDP client to the first frame whose controls carry their value."""
    from pythonosc.udp_client import SimpleUDPClient

    audio = analyzer()
    states = [s for block in blocks(click_audio(2.0)[0]) for s in audio.push(block)]
    records: list[tuple[Any, float]] = []  # (controls the frame was planned with, publish done)
    stop = threading.Event()
    failures: list[BaseException] = []

    def render_loop() -> None:
        pacer = Pacer(FPS)
        k = 0
        try:
            while pacer.wait(stop):
                request = rig.conductor.plan(states[k % len(states)], k)
                frame = rig.conductor.execute(request)
                rig.outputs.publish(frame.image, frame.index, frame.time)
                records.append((request.controls, time.perf_counter()))
                k += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the caller, not lost in the thread
            failures.append(exc)

    rig.conductor.reset()
    client = SimpleUDPClient("127.0.0.1", rig.server.port)
    rng = random.Random(seed)
    sent: list[tuple[str, Any, float]] = []
    loop = threading.Thread(target=render_loop, name="bench-render", daemon=True)
    loop.start()
    time.sleep(spacing_s)
    # prompts first (a prompt sent while paused would show at once), then pause on and off
    messages: list[tuple[str, str | bool]] = [
        ("/hamba/prompt", f"abstract flowing light number {k}") for k in range(trials)
    ]
    messages += [("/hamba/pause", k % 2 == 0) for k in range(trials + trials % 2)]
    for address, value in messages:
        time.sleep(spacing_s * rng.uniform(1.0, 2.0))
        sent_at = time.perf_counter()
        client.send_message(address, value)
        sent.append((address, value, sent_at))
    time.sleep(3 * spacing_s)
    stop.set()
    loop.join(timeout=10.0)
    if failures:
        raise failures[0]
    latencies: dict[str, list[float]] = {key: [] for key in OSC_KEYS}
    for address, value, sent_at in sent:
        name = address.rsplit("/", 1)[1]
        carried = (
            done for controls, done in records if done > sent_at and _has(controls, name, value)
        )
        first = next(carried, None)
        if first is not None:
            key = address if name == "prompt" else f"{address} {'on' if value else 'off'}"
            latencies[key].append(first - sent_at)
    return {
        "trials_per_address": trials,
        "frames_rendered": len(records),
        "messages_sent": len(sent),
        **{key: stats_ms(values) for key, values in latencies.items()},
    }


def _has(controls: Any, name: str, value: Any) -> bool:
    return bool(getattr(controls, name) == value)


# -- the run -----------------------------------------------------------------------------------


def run(
    *,
    sizes: Sequence[int] = (256, 512),
    frames: int = 40,
    steps: int = 1,
    device: str = "cpu",
    latency_seconds: float = 4.0,
    osc_trials: int = 8,
    threads: int | None = None,
) -> dict[str, Any]:
    """Every section for every size (see the module docstring); torch's thread count is put
    back afterwards."""
    threads = threads or max(1, (os.cpu_count() or 1) - 1)  # as the daemon does
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run_sizes(sizes, frames, steps, device, latency_seconds, osc_trials, threads)
    finally:
        torch.set_num_threads(previous_threads)


def _run_sizes(
    sizes: Sequence[int],
    frames: int,
    steps: int,
    device: str,
    latency_seconds: float,
    osc_trials: int,
    threads: int,
) -> dict[str, Any]:
    from engine.config import ProfilingConfig
    from engine.diffusion.tiny import TINY_LABEL
    from engine.profiling.profiler import configure_profiler, get_profiler

    load_before = load_average()
    rss_start = get_profiler().memory()["rss_bytes"]
    results: dict[str, Any] = {"benchmark": "live path end to end", "sizes": {}}
    dtype = "unknown"
    for size in sizes:
        rig = build_rig(size, steps, device)
        base = rig.conductor.stream.base
        dtype = str(base.dtype)
        profiler = configure_profiler(ProfilingConfig(enabled=True), base.device)
        try:
            loaded = profiler.memory()
            row: dict[str, Any] = {"throughput": throughput(rig, frames)}
            row["generate_parts"] = generate_parts(rig)
            frame_s = row["throughput"]["stages"]["frame"]["p50_ms"] / 1000.0
            row["audio_to_frame"] = audio_latency(rig, latency_seconds)
            # messages a few frames apart, so that each one is seen before the next comes
            row["osc_to_frame"] = osc_latency(rig, osc_trials, max(2.5 * frame_s, 2.0 / FPS))
            row["memory"] = {
                "rss_after_load_mib": _mib(loaded["rss_bytes"]),
                "rss_peak_mib": _mib(profiler.memory()["rss_peak_bytes"]),
            }
            row["traced_unet_signatures"] = getattr(base, "traced_unet_signatures", None)
            results["sizes"][f"{size}x{size}"] = row
        finally:
            # the profiler is process-wide: leave it as a fresh process has it
            profiler.disable()
            profiler.reset()
            rig.close()
    results["conditions"] = {
        "device": device,
        "dtype": dtype,
        "model": TINY_LABEL,
        "steps": steps,
        "video_fps": FPS,
        "audio": f"{SAMPLE_RATE} Hz, {BLOCK}-sample blocks, clicks at {BPM:.0f} BPM",
        "outputs": "shm (3 slots), OSC feedback to one loopback listener",
        "torch_threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "rss_before_models_mib": _mib(rss_start),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        **versions(),
    }
    return results


def print_tables(results: dict[str, Any]) -> None:
    """Markdown tables: one summary row per size, then each size's stages."""
    print(
        "| size | fps | audio->frame p50 / p95 ms | click->frame p50 ms | "
        "OSC prompt / pause on / pause off p50 ms | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|")
    for size, row in results["sizes"].items():
        audio = row["audio_to_frame"]["state_to_frame"]
        click = row["audio_to_frame"]["click_to_frame"]
        osc = row["osc_to_frame"]
        print(
            f"| {size} | {row['throughput']['fps']:.1f} | {_ms(audio, 'p50_ms')} / "
            f"{_ms(audio, 'p95_ms')} | {_ms(click, 'p50_ms')} | "
            f"{' / '.join(_ms(osc[key], 'p50_ms') for key in OSC_KEYS)} | "
            f"{row['memory']['rss_peak_mib']:.0f} |"
        )
    for size, row in results["sizes"].items():
        print(f"\n{size}: stages per frame (ms)\n")
        print("| stage | mean | p50 | p95 | share of the frame |")
        print("|---|---|---|---|---|")
        stages = row["throughput"]["stages"]
        for name, stage in stages.items():
            share = f"{100 * stage['mean_ms'] / stages['frame']['mean_ms']:.1f}%"
            print(
                f"| {name} | {stage['mean_ms']:.2f} | {stage['p50_ms']:.2f} | "
                f"{stage['p95_ms']:.2f} | {share} |"
            )
        for name, part in row["generate_parts"].items():
            print(
                f"| generate: {name} | {part['mean_ms']:.2f} | {part['p50_ms']:.2f} | "
                f"{part['p95_ms']:.2f} | |"
            )
    conditions = results["conditions"]
    print(
        f"\nconditions: {conditions['device']} {conditions['dtype']}, {conditions['model']}, "
        f"{conditions['steps']} step(s), {conditions['torch_threads']} torch thread(s), "
        f"{conditions['cpu']}, load {conditions['load_average_before']} -> "
        f"{conditions['load_average_after']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--frames", type=int, default=40, help="frames timed per size")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--latency-seconds", type=float, default=4.0)
    parser.add_argument("--osc-trials", type=int, default=8, help="per address")
    parser.add_argument("--threads", type=int, default=None, help="default: cores - 1")
    parser.add_argument("--out", type=Path, default=RESULTS / "e2e.json")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    results = run(
        sizes=args.sizes,
        frames=args.frames,
        steps=args.steps,
        device=args.device,
        latency_seconds=args.latency_seconds,
        osc_trials=args.osc_trials,
        threads=args.threads,
    )
    print_tables(results)
    if not args.no_write:
        write_results(results, args.out)
    return 0


def _ms(stats: dict[str, Any], key: str) -> str:
    return f"{stats[key]:.1f}" if key in stats else "-"


def _mib(value: int | None) -> float | None:
    return None if value is None else value / 2**20


if __name__ == "__main__":
    sys.exit(main())

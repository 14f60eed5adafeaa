"""Real architectures, random weights, on a GPU: plain diffusers, the engine, the engine in the
live loop, and how far from the floor, in one run.

SD 1.5's UNet (``UNet2DConditionModel(sample_size=64, cross_attention_dim=768,
attention_head_dim=8)``, 860 M parameters) and TAESD (``AutoencoderTiny()``) with a CLIP
ViT-L-shaped text encoder, all random-initialised (speed does not depend on weight values), at
512x512, fp16, frames delivered into host memory. Measured in one process:

- a plain diffusers ``StableDiffusionPipeline.__call__`` per frame on the same components, at 1
  step and at the stream batch's step count;
- the engine end to end at 1 step, batch 1 (eager, with CUDA graphs, optionally with
  ``torch.compile``), the streaming wrapper with temporal coherence on, and the stream batch
  (``--stream-steps`` steps, default 2: one batched unet call per frame);
- the engine in the live loop: ``bridge.daemon.Daemon`` (music clock at 1,000 frames a second
  so the model sets the pace, shm output, OSC feedback to a listener process), pipelined and
  sequential, at 1 step and with the stream batch, and the ``null`` model for the loop's own
  floor on this machine (the pinned host ring and its events included);
- per-stage times (unet step, decode + uint8, copy to host) with CUDA events;
- peak GPU memory;
- the floor: the frame's FLOPs (``torch.utils.flop_counter``) over a measured matmul rate.

Without a CUDA device it says so and exits (status 0). ``--cpu-smoke`` runs every part with the
tiny model at 64x64 on the CPU, so the script is known to work where no GPU is. A GPU machine
that lacks the project's pure-Python dependencies is told which wheels to carry
(:data:`WHEELS`; BENCHMARKS.md, "On a GPU").

Run: ``python -m benchmarks.bench_gpu`` (``--help``). Writes
``benchmarks/results/gpu_<device>.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch

from benchmarks.bench_engine import PROMPT, RESULTS, plain_frame, versions

SD15_LABEL = "SD 1.5 UNet + TAESD + CLIP ViT-L text encoder, random weights"
# the model kind the live loop loads: the components built here, not a checkpoint
BENCH_KIND = "bench-sd15-random"

# what a GPU machine with torch but without the project's other dependencies must be given:
# (module to import, the wheel that provides it); all pure Python but pydantic-core
WHEELS: tuple[tuple[str, str], ...] = (
    ("diffusers", "diffusers==0.42.1"),
    ("pydantic", "pydantic==2.14.4"),
    ("pydantic_core", "pydantic-core==2.50.5"),
    ("annotated_types", "annotated-types==0.8.0"),
    ("typing_inspection", "typing-inspection==0.4.5"),
    ("pythonosc", "python-osc==1.10.2"),
)


def missing_wheels() -> list[str]:
    """The wheels of :data:`WHEELS` whose module cannot be imported here."""
    missing = []
    for module, wheel in WHEELS:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(wheel)
    return missing


def wheel_advice(missing: Sequence[str]) -> str:
    """How to carry the missing wheels to a machine without package registries."""
    return (
        f"bench_gpu: missing Python packages: {', '.join(missing)}. On a machine with pip "
        "access, from the repository root:\n"
        "  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 "
        "--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 "
        f"--platform manylinux2014_x86_64 -d .whl {' '.join(w for _, w in WHEELS)}\n"
        "then, on the GPU machine (carry .whl):\n"
        "  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && "
        "export PYTHONPATH=/tmp/site:.\n"
        "(BENCHMARKS.md, section 'On a GPU')"
    )


def build_components(device: torch.device, dtype: torch.dtype, *, smoke: bool) -> Any:
    """A diffusers ``StableDiffusionPipeline``: SD 1.5 + TAESD architectures, or (smoke) tiny."""
    from diffusers import AutoencoderTiny, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from engine.diffusion.tiny import (
        assemble_pipeline,
        build_tiny_pipeline,
        build_tiny_tokenizer,
        few_step_scheduler,
    )

    if smoke:
        return build_tiny_pipeline(0, 64, 64).to(device)
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    # initialise on the device: 860 M parameters are slow to fill on the cpu
    with torch.device(device):
        unet: Any = UNet2DConditionModel(
            sample_size=64, cross_attention_dim=768, attention_head_dim=8
        )
        vae: Any = AutoencoderTiny()
        text_encoder: Any = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                max_position_embeddings=77,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    pipe = assemble_pipeline(
        {
            "unet": unet,
            "vae": vae,
            "text_encoder": text_encoder,
            "tokenizer": tokenizer,
            "scheduler": few_step_scheduler(),
        }
    )
    for module in (unet, vae, text_encoder):
        module.to(dtype=dtype).eval().requires_grad_(False)
    return pipe


def count_flops(engine: Any) -> dict[str, float]:
    """FLOPs of one unet step and one decode at the engine's size, batch 1, no guidance."""
    from torch.utils.flop_counter import FlopCounterMode

    embeds = engine.encode_prompt(PROMPT)
    latents = torch.randn(engine.get_latent_shape(), device=engine.device)
    schedule = engine.step_schedule()
    index = torch.zeros(1, dtype=torch.long, device=engine.device)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as unet_counter:
            clean = engine.predict_x0(latents, index, embeds, schedule)
        with FlopCounterMode(display=False) as decode_counter:
            engine.pipe.vae.decode(clean.to(engine.dtype))
    return {
        "unet_step_tflop": unet_counter.get_total_flops() / 1e12,
        "decode_tflop": decode_counter.get_total_flops() / 1e12,
    }


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """The measured rate of a large square matrix product (TFLOP/s)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    repeats = 20 if device.type == "cuda" else 3
    ms = time_ms(lambda: a @ b, device, repeats=repeats, warmup=3)
    return 2 * n**3 / (ms / 1000) / 1e12


def time_ms(fn: Callable[[], object], device: torch.device, *, repeats: int, warmup: int) -> float:
    """Mean milliseconds per call: CUDA events on cuda, perf_counter elsewhere."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        for _ in range(repeats):
            fn()
        end.record()
        torch.cuda.synchronize(device)
        return float(start.elapsed_time(end)) / repeats
    begin = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - begin) * 1000 / repeats


def fps(fn: Callable[[], object], frames: int) -> float:
    """Frames per second of a call that hands its frame to the host (so it synchronises)."""
    fn()
    fn()
    begin = time.perf_counter()
    for _ in range(frames):
        fn()
    return frames / (time.perf_counter() - begin)


def live_loop(
    pipe: Any,
    label: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    size: int,
    stream_steps: int,
    seconds: float,
    cuda_graphs: bool,
    smoke: bool = False,
) -> dict[str, dict[str, Any]]:
    """The daemon's loop on these components (registered as a model kind), and on ``null``;
    ``smoke`` runs one case of each kind (every code path, a third of the time)."""
    from benchmarks.bench_loop import run_case
    from engine.config import DiffusionConfig, InferenceConfig
    from engine.diffusion.base import BaseDiffusionPipeline, register_model_kind
    from engine.diffusion.sd15 import SD15Pipeline

    built: dict[str, SD15Pipeline] = {}

    def build(diffusion: DiffusionConfig, inference: InferenceConfig) -> BaseDiffusionPipeline:
        # one engine per setting, kept across runs: traces and cuda graphs are made once
        key = diffusion.model_dump_json() + inference.model_dump_json()
        if key not in built:
            built[key] = SD15Pipeline(diffusion, inference, pipe=pipe, label=label)
        return built[key]

    register_model_kind(BENCH_KIND, build)
    common = {"diffusion.dtype": str(dtype).removeprefix("torch.")}
    engine = {**common, "diffusion.cuda_graphs": cuda_graphs}
    batch = {
        **common,
        "inference.num_inference_steps": stream_steps,
        "stream.use_stream_batch": True,
    }
    cases: list[tuple[str, str, bool, dict[str, Any]]] = [
        ("null model, pipelined (the loop's floor)", "null", True, common),
        ("engine 1 step, pipelined", BENCH_KIND, True, engine),
        ("engine 1 step, sequential", BENCH_KIND, False, engine),
        (f"engine stream batch {stream_steps} steps, pipelined", BENCH_KIND, True, batch),
        (f"engine stream batch {stream_steps} steps, sequential", BENCH_KIND, False, batch),
    ]
    if smoke:
        cases = [cases[0], cases[1], cases[4]]
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, model, pipelined, overrides in cases:
            rows[name] = run_case(
                None,
                Path(folder),
                model=model,
                pipelined=pipelined,
                seconds=seconds,
                size=size,
                outputs=("shm",),
                device=str(device),
                overrides=overrides,
            )
            print(f"  live loop, {name}: {rows[name]['fps']:.1f} fps", flush=True)
    return rows


def run(
    *,
    smoke: bool = False,
    frames: int = 200,
    compile_unet: bool = False,
    stream_steps: int = 2,
    loop_seconds: float = 8.0,
) -> dict[str, Any]:
    """Every measurement in one process; see the module docstring."""
    from engine.config import DiffusionConfig, InferenceConfig, StreamConfig
    from engine.diffusion.host import HostTransfer
    from engine.diffusion.sd15 import SD15Pipeline
    from engine.diffusion.stream import StreamDiffusionPipeline
    from engine.diffusion.tiny import TINY_LABEL

    device = torch.device("cpu" if smoke else "cuda")
    dtype = torch.float32 if smoke else torch.float16
    precision: Literal["float32", "float16"] = "float32" if smoke else "float16"
    size = 64 if smoke else 512
    if smoke:
        frames = min(frames, 10)
    pipe = build_components(device, dtype, smoke=smoke)
    inference = InferenceConfig(height=size, width=size, num_inference_steps=1)
    label = TINY_LABEL if smoke else SD15_LABEL

    def engine_for(steps: int = 1, **settings: Any) -> SD15Pipeline:
        diffusion = DiffusionConfig(model="given", device=str(device), dtype=precision, **settings)
        config = inference.model_copy(update={"num_inference_steps": steps})
        engine = SD15Pipeline(diffusion, config, pipe=pipe, label=label)
        engine.load_model()
        return engine

    eager = engine_for()
    embeds = eager.encode_prompt(PROMPT)
    latents = torch.randn(eager.get_latent_shape(), device=device)
    results: dict[str, Any] = {"model": label, "flops": count_flops(eager)}
    rate = matmul_tflops(device, dtype, 1024 if smoke else 8192)
    frame_tflop = results["flops"]["unet_step_tflop"] + results["flops"]["decode_tflop"]
    results["matmul_tflops"] = rate
    results["floor_ms_per_frame"] = frame_tflop / rate * 1000

    engines: dict[str, SD15Pipeline] = {"engine eager": eager}
    if device.type == "cuda":
        engines["engine cuda graphs"] = engine_for(cuda_graphs=True)
        if compile_unet:
            engines["engine compile + cuda graphs"] = engine_for(cuda_graphs=True, compile=True)
    figures: dict[str, dict[str, Any]] = {}
    for name, engine in engines.items():
        with PeakMemory(device) as peak:
            rate_fps = fps(partial(engine.generate_batch, latents, embeds), frames)
        figures[name] = {"fps": rate_fps, "peak_memory_mib": peak.mib}
    fastest = engines[list(engines)[-1]]
    stream = StreamDiffusionPipeline(fastest, StreamConfig(enable_temporal_coherence=True))
    stream_embeds = stream.encode_prompt(PROMPT)
    with PeakMemory(device) as peak:
        rate_fps = fps(
            lambda: stream.generate_frame_with_coherence(latents, stream_embeds, 0.5), frames
        )
    figures["stream wrapper (coherence on)"] = {"fps": rate_fps, "peak_memory_mib": peak.mib}
    batched = StreamDiffusionPipeline(
        engine_for(stream_steps),
        StreamConfig(enable_temporal_coherence=True, use_stream_batch=True),
    )
    with PeakMemory(device) as peak:
        rate_fps = fps(
            lambda: batched.generate_frame_with_coherence(latents, stream_embeds, 0.5), frames
        )
    figures[f"stream batch ({stream_steps} steps, one unet call)"] = {
        "fps": rate_fps,
        "peak_memory_mib": peak.mib,
    }

    pipe.set_progress_bar_config(disable=True)

    for steps in (1, stream_steps):
        with PeakMemory(device) as peak:
            call = partial(plain_frame, pipe, latents, steps, prompt=PROMPT)
            rate_fps = fps(call, max(frames // 4, 5))
        name = "diffusers __call__ (prompt)" + ("" if steps == 1 else f", {steps} steps")
        figures[name] = {"fps": rate_fps, "peak_memory_mib": peak.mib}
    results["methods"] = figures
    results["speedup_vs_call"] = {
        name: row["fps"] / figures["diffusers __call__ (prompt)"]["fps"]
        for name, row in figures.items()
    }

    host = HostTransfer(device)
    clean = eager.denoise(latents, embeds)
    frame = torch.zeros(1, size, size, 4, dtype=torch.uint8, device=device)
    repeats = 5 if smoke else 50
    results["stages_ms"] = {
        "unet step (eager)": time_ms(
            lambda: eager.denoise(latents, embeds), device, repeats=repeats, warmup=2
        ),
        "decode + uint8 + copy (eager)": time_ms(
            lambda: eager.decode(clean), device, repeats=repeats, warmup=2
        ),
        "copy to host": time_ms(
            lambda: host.fetch(frame, reused=True), device, repeats=repeats, warmup=2
        ),
        "prompt encoding (once per prompt)": time_ms(
            lambda: eager.encode_prompt(PROMPT), device, repeats=repeats, warmup=2
        ),
    }
    results["live_loop"] = live_loop(
        pipe,
        label,
        device=device,
        dtype=dtype,
        size=size,
        stream_steps=stream_steps,
        seconds=min(loop_seconds, 0.75) if smoke else loop_seconds,
        cuda_graphs=device.type == "cuda",
        smoke=smoke,
    )
    results["conditions"] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype),
        "size": f"{size}x{size}",
        "steps": 1,
        "batch": 1,
        "stream_batch_steps": stream_steps,
        "frames_timed": frames,
        "smoke": smoke,
        "scheduler": type(pipe.scheduler).__name__,
        "channels_last": eager.diffusion_config.channels_last,
        "cuda": torch.version.cuda,
        **versions(),
    }
    return results


def print_table(results: dict[str, Any]) -> None:
    print(f"model: {results['model']}")
    print(f"{'method':<42} {'fps':>8} {'ms/frame':>9} {'x call':>7} {'peak MiB':>9}")
    for name, row in results["methods"].items():
        speedup = results["speedup_vs_call"][name]
        memory = row.get("peak_memory_mib")
        shown = f"{memory:>9.0f}" if memory is not None else f"{'-':>9}"
        print(f"{name:<42} {row['fps']:>8.1f} {1000 / row['fps']:>9.2f} {speedup:>7.1f} {shown}")
    print("live loop (bridge.daemon, shm + OSC feedback):")
    print(f"  {'case':<48} {'fps':>8} {'host p50':>9} {'host p99':>9} {'drops':>7}")
    for name, row in results["live_loop"].items():
        host = row["host_ms"]
        print(
            f"  {name:<48} {row['fps']:>8.1f} {host['median']:>8.3f} {host['p99']:>8.3f} "
            f"{row['dropped_share']:>6.1%}"
        )
    print("stages (ms):")
    for name, ms in results["stages_ms"].items():
        print(f"  {name:<36} {ms:>8.3f}")
    flops = results["flops"]
    print(
        f"floor: unet {flops['unet_step_tflop']:.3f} + decode {flops['decode_tflop']:.3f} TFLOP "
        f"at {results['matmul_tflops']:.1f} TFLOP/s = {results['floor_ms_per_frame']:.3f} ms/frame"
    )
    conditions = results["conditions"]
    print(f"conditions: {conditions['device']} {conditions['dtype']} {conditions['size']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model, 64x64, on the cpu")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--stream-steps", type=int, default=2, help="steps of the stream batch")
    parser.add_argument("--loop-seconds", type=float, default=8.0, help="each live-loop run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here, nothing measured (--cpu-smoke checks the script)")
        return 0
    missing = missing_wheels()
    if missing:
        print(wheel_advice(missing), file=sys.stderr)
        return 2
    results = run(
        smoke=args.cpu_smoke,
        frames=args.frames,
        compile_unet=args.compile,
        stream_steps=args.stream_steps,
        loop_seconds=args.loop_seconds,
    )
    print_table(results)
    out = args.out
    if out is None and not args.cpu_smoke:
        slug = re.sub(r"[^a-z0-9]+", "_", results["conditions"]["device"].lower()).strip("_")
        out = RESULTS / f"gpu_{slug}.json"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"written: {out}")
    return 0


class PeakMemory:
    """Resets the device's peak memory on entry; ``mib`` holds the peak after exit (cuda only)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib: float | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20


if __name__ == "__main__":
    sys.exit(main())

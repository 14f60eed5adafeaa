"""The engine's offline path against a plain diffusers call per frame, same components, one process.

Both sides render the built-in tiny model (same seed, so the same weights) at the same size and
step count on the same device. The engine renders batches of noise latents with the prompt
encoded once (``SD15Pipeline.generate_batch``, the offline path); the baseline is what a
diffusers user writes: ``StableDiffusionPipeline.__call__`` once per frame with the prompt,
turned into the same RGBA ``uint8`` frame. A second baseline passes precomputed prompt
embeddings, to show how much of the gap is prompt encoding. A second engine whose unet carries
a call-counting forward hook runs the unet eagerly (:mod:`engine.diffusion.traced` never
replays a hooked module): the difference is what the CPU trace buys. Methods alternate within every round
so that load from other processes falls on all of them alike; the ratio comes from one run.
OpenMP's wait policy changes CPU figures a lot (passive waits, which ``hamba`` sets for the
daemon, cost a quarter here): the conditions record it.

Run: ``python -m benchmarks.bench_engine`` (``--help`` for the options). Writes
``benchmarks/results/engine_cpu.json`` (or ``--out``) with the conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from engine.diffusion.sd15 import SD15Pipeline

RESULTS = Path(__file__).parent / "results"
PROMPT = "abstract flowing liquid light, vivid colors, high detail"


def run(
    *,
    size: int = 256,
    steps: int = 1,
    batch: int = 4,
    rounds: int = 5,
    frames_per_round: int = 16,
    device: str = "cpu",
    seed: int = 42,
) -> dict[str, Any]:
    """Time every method for ``rounds`` alternating rounds; fps, per-frame times, ratios."""
    from engine.diffusion.tiny import TINY_LABEL

    if frames_per_round % batch:
        raise ValueError(f"frames_per_round ({frames_per_round}) must be a multiple of batch")
    sides = _Sides.build(size, steps, device, seed)
    engine = sides.engine
    embeds = engine.encode_prompt(PROMPT)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(frames_per_round, *engine.get_latent_shape()[1:], generator=generator)
    methods = _methods(sides, embeds, latents, steps=steps, batch=batch)
    for method in methods.values():  # warm-up: allocator, kernels, lazy inits
        method()
    load_before = load_average()
    seconds = _timed_rounds(methods, rounds)
    load_after = load_average()
    figures = _figures(seconds, frames_per_round)
    return {
        "benchmark": "engine offline path vs plain diffusers __call__ per frame",
        "model": TINY_LABEL,
        "methods": figures,
        **_ratios(figures, list(methods)),
        "traced_unet_signatures": engine.traced_unet_signatures,
        "untraced_unet_eager_calls": sides.eager_calls.calls,
        "conditions": {
            "device": str(engine.device),
            "dtype": str(engine.dtype),
            "size": f"{size}x{size}",
            "steps": steps,
            "batch": batch,
            "rounds": rounds,
            "frames_per_round": frames_per_round,
            "scheduler": type(engine.pipe.scheduler).__name__,
            "channels_last": engine.diffusion_config.channels_last,
            "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "load_average_before": load_before,
            "load_average_after": load_after,
            **versions(),
        },
    }


@dataclass(frozen=True, eq=False)
class _Sides:
    """What is compared: the engine, the engine with its unet watched (so run eagerly), and a
    plain diffusers pipeline with its own copy of the same weights."""

    engine: SD15Pipeline
    untraced: SD15Pipeline
    eager_calls: _CallCounter
    plain: Any

    @classmethod
    def build(cls, size: int, steps: int, device: str, seed: int) -> _Sides:
        from engine.config import DiffusionConfig, InferenceConfig
        from engine.diffusion.sd15 import SD15Pipeline
        from engine.diffusion.tiny import build_tiny_pipeline

        engine = SD15Pipeline(
            DiffusionConfig(model="tiny", device=device, seed=seed),
            InferenceConfig(height=size, width=size, num_inference_steps=steps),
        )
        engine.load_model()
        untraced = SD15Pipeline(engine.diffusion_config, engine.inference_config)
        untraced.load_model()
        eager_calls = _CallCounter()
        untraced.pipe.unet.register_forward_pre_hook(eager_calls)
        # the baseline gets its own copy of the same weights, untouched by the engine's set-up
        plain = build_tiny_pipeline(seed, size, size).to(engine.device)
        plain.set_progress_bar_config(disable=True)
        return cls(engine, untraced, eager_calls, plain)


def _methods(
    sides: _Sides, embeds: torch.Tensor, latents: torch.Tensor, *, steps: int, batch: int
) -> dict[str, Callable[[], None]]:
    """Each method renders ``latents`` once, frame by frame or ``batch`` at a time; the order
    is the order of the results (``_ratios`` reads it)."""
    frames_per_round = latents.shape[0]
    engine, plain = sides.engine, sides.plain

    def engine_batched() -> None:
        for start in range(0, frames_per_round, batch):
            engine.generate_batch(latents[start : start + batch], embeds)

    def single(pipeline: SD15Pipeline) -> Callable[[], None]:
        def frames() -> None:
            for i in range(frames_per_round):
                pipeline.generate_batch(latents[i : i + 1], embeds)

        return frames

    def plain_call(**prompt: Any) -> Callable[[], None]:
        def frames() -> None:
            for i in range(frames_per_round):
                plain_frame(plain, latents[i : i + 1].to(engine.device), steps, **prompt)

        return frames

    return {
        f"engine generate_batch (batch {batch})": engine_batched,
        "engine generate_batch (batch 1)": single(engine),
        "diffusers __call__ (prompt)": plain_call(prompt=PROMPT),
        "diffusers __call__ (prompt_embeds)": plain_call(prompt_embeds=embeds),
        "engine generate_batch (batch 1, unet untraced)": single(sides.untraced),
    }


def _timed_rounds(methods: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each method in each round; methods alternate within every round, so that
    load from other processes falls on all of them alike."""
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, method in methods.items():
                start = time.perf_counter()
                method()
                seconds[name].append(time.perf_counter() - start)
    return seconds


def _figures(seconds: dict[str, list[float]], frames_per_round: int) -> dict[str, dict[str, Any]]:
    """fps and per-frame times of each method, over all rounds and in its median round."""
    figures: dict[str, dict[str, Any]] = {}
    for name, times in seconds.items():
        total_frames = len(times) * frames_per_round
        figures[name] = {
            "fps": total_frames / sum(times),
            "ms_per_frame": 1000 * sum(times) / total_frames,
            "ms_per_frame_median_round": 1000 * statistics.median(times) / frames_per_round,
            "round_seconds": times,
        }
    return figures


def _ratios(figures: dict[str, dict[str, Any]], names: list[str]) -> dict[str, float]:
    """The headline ratios, ``names`` in the order ``_methods`` gives them."""
    batched, single, call, call_embeds, untraced = (figures[name] for name in names)
    return {
        "ratio_engine_batched_vs_call": batched["fps"] / call["fps"],
        "ratio_engine_single_vs_call": single["fps"] / call["fps"],
        "ratio_engine_batched_vs_call_with_embeds": batched["fps"] / call_embeds["fps"],
        # medians of rounds shrug off bursts of load from other processes
        "ratio_engine_batched_vs_call_median_round": call["ms_per_frame_median_round"]
        / batched["ms_per_frame_median_round"],
        "ratio_trace_gain_batch_1": single["fps"] / untraced["fps"],
    }


def versions() -> dict[str, Any]:
    """Software and machine: what a reader needs to reproduce a figure."""
    import diffusers
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def print_table(results: dict[str, Any]) -> None:
    print(f"{'method':<48} {'fps':>8} {'ms/frame':>9} {'median round ms/frame':>22}")
    for name, row in results["methods"].items():
        print(
            f"{name:<48} {row['fps']:>8.1f} {row['ms_per_frame']:>9.1f} "
            f"{row['ms_per_frame_median_round']:>22.1f}"
        )
    print(f"engine (batched) / diffusers call:      {results['ratio_engine_batched_vs_call']:.2f}x")
    print(f"engine (batch 1) / diffusers call:      {results['ratio_engine_single_vs_call']:.2f}x")
    ratio = results["ratio_engine_batched_vs_call_with_embeds"]
    print(f"engine (batched) / call with embeds:    {ratio:.2f}x")
    ratio = results["ratio_engine_batched_vs_call_median_round"]
    print(f"engine (batched) / call, median rounds: {ratio:.2f}x")
    print(f"traced / untraced unet (batch 1):       {results['ratio_trace_gain_batch_1']:.2f}x")
    conditions = results["conditions"]
    print(
        f"conditions: {conditions['device']} {conditions['dtype']} {conditions['size']} "
        f"{conditions['steps']} step(s), {conditions['torch_threads']} threads "
        f"(OMP_WAIT_POLICY {conditions['omp_wait_policy']}), "
        f"{conditions['cpu']}, load {conditions['load_average_before']} -> "
        f"{conditions['load_average_after']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames-per-round", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "engine_cpu.json")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    results = run(
        size=args.size,
        steps=args.steps,
        batch=args.batch,
        rounds=args.rounds,
        frames_per_round=args.frames_per_round,
        device=args.device,
    )
    print_table(results)
    if not args.no_write:
        write_results(results, args.out)
    return 0


def write_results(results: dict[str, Any], out: Path) -> None:
    """Write a benchmark's results as indented JSON (folders made as needed) and say where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {out}")


def plain_frame(pipe: Any, latents: torch.Tensor, steps: int, **prompt: Any) -> np.ndarray:
    """One frame the way a diffusers user gets it: ``__call__``, then RGBA ``uint8``."""
    height, width = (side * pipe.vae_scale_factor for side in latents.shape[-2:])
    image = pipe(
        **prompt,
        # diffusers moves given latents to the device but not to the unet's dtype (fp16 on a gpu)
        latents=latents.to(pipe.device, pipe.unet.dtype),
        num_inference_steps=steps,
        guidance_scale=0.0,
        height=height,
        width=width,
        output_type="np",
    ).images[0]
    return to_rgba(image)


def to_rgba(image: np.ndarray) -> np.ndarray:
    """A diffusers ``np`` image (floats in [0, 1]) as the engine's RGBA ``uint8`` frame."""
    rgb = (image * 255).round().astype(np.uint8)
    alpha = np.full((*rgb.shape[:2], 1), 255, np.uint8)
    return np.ascontiguousarray(np.concatenate([rgb, alpha], axis=2))


class _CallCounter:
    """A forward pre-hook that counts calls; a watched unet runs eagerly (a replay would skip
    the hook), and the count shows it did."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, _module: torch.nn.Module, _args: Any) -> None:
        self.calls += 1


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_name() -> str:
    fallback = platform.processor() or "unknown"
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # not linux
        return fallback
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else fallback


if __name__ == "__main__":
    sys.exit(main())

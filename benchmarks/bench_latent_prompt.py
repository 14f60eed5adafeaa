"""Per-frame cost of the latent walk and the prompt blend, and the profiler's overhead.

Measures, on the CPU, at the shapes SD 1.5 uses at 512x512 (latent 1x4x64x64, text embeddings
77x768): ``LatentGenerator.latent_for_state`` for each walk (noise cache warm, as in a
running show, and cold: a fresh keyframe drawn on every call), ``PromptInterpolator
.blend_for_state``, and one ``profile()`` block with the profiler disabled and enabled against
an empty loop. Writes ``benchmarks/results/latent_prompt.json`` with the conditions.

Run: ``.venv/bin/python -m benchmarks.bench_latent_prompt [--frames N] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.audio.types import MusicState
from engine.config import LatentConfig, PromptConfig
from engine.latent.generator import LatentGenerator
from engine.profiling.profiler import Profiler, conditions
from engine.prompt.interpolator import PromptInterpolator

LATENT_SHAPE = (1, 4, 64, 64)
SEQ, HIDDEN = 77, 768
DEFAULT_OUT = Path(__file__).parent / "results" / "latent_prompt.json"
FRAMES_PER_BEAT = 12  # 120 BPM at 24 fps


def music_states(count: int, seed: int = 0) -> list[MusicState]:
    """A synthetic show: beats every 12 frames, random energy and chroma."""
    rng = np.random.default_rng(seed)
    states = []
    for i in range(count):
        beat_count, offset = divmod(i, FRAMES_PER_BEAT)
        states.append(
            MusicState(
                frame=i,
                time=i / 24.0,
                energy=float(rng.random()),
                onset=0.0,
                beat=offset == 0,
                beat_phase=offset / FRAMES_PER_BEAT,
                beat_count=beat_count,
                tempo=120.0,
                chroma=rng.random(12).astype(np.float32),
            )
        )
    return states


def per_call(fn: Callable[[int], object], calls: int, repeats: int = 5) -> dict[str, float]:
    """Microseconds per call of ``fn(i)`` for i in range(calls): median and best of repeats."""
    fn(0)  # warm-up: first-call set-up is not per-frame cost
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(calls):
            fn(i)
        times.append((time.perf_counter() - start) / calls * 1e6)
    return {"median_us": statistics.median(times), "best_us": min(times), "calls": calls}


def _latent(gen: LatentGenerator, states: list[MusicState], i: int) -> torch.Tensor:
    return gen.latent_for_state(states[i], LATENT_SHAPE)


def bench_latents(frames: int) -> dict[str, Any]:
    states = music_states(frames)
    results: dict[str, Any] = {}
    for walk in ("beat_slerp", "energy", "circular"):
        gen = LatentGenerator(LatentConfig.model_validate({"walk": walk}))
        results[walk] = per_call(partial(_latent, gen, states), frames)
    # cold: every call draws a new keyframe (what the cache saves on the beat path)
    cold = LatentGenerator(LatentConfig())

    def draw(i: int) -> torch.Tensor:
        cold.clear_cache()
        return cold.keyframe_noise(i, LATENT_SHAPE)

    results["keyframe_draw_cold"] = per_call(draw, max(frames // 4, 10))
    return results


def bench_prompt(frames: int) -> dict[str, Any]:
    states = music_states(frames, seed=1)
    rng = torch.Generator().manual_seed(0)
    base = torch.randn(1, SEQ, HIDDEN, generator=rng)
    chroma = torch.randn(12, SEQ, HIDDEN, generator=rng)
    interp = PromptInterpolator(PromptConfig())
    return {
        "blend_for_state": per_call(
            lambda i: interp.blend_for_state(states[i], base, chroma), frames
        )
    }


def bench_profiler(calls: int) -> dict[str, Any]:
    disabled = Profiler(enabled=False)
    enabled = Profiler(enabled=True)

    def empty(i: int) -> None:
        return None

    def off(i: int) -> None:
        with disabled.profile("stage"):
            return None

    def on(i: int) -> None:
        with enabled.profile("stage"):
            return None

    base, cost_off, cost_on = (per_call(fn, calls) for fn in (empty, off, on))
    return {
        "empty_loop": base,
        "disabled_profile": cost_off,
        "enabled_profile": cost_on,
        "disabled_overhead_ns": 1000 * (cost_off["median_us"] - base["median_us"]),
        "enabled_overhead_ns": 1000 * (cost_on["median_us"] - base["median_us"]),
        "recorded_while_disabled": len(disabled.stages()),
    }


def run(frames: int = 2000, profiler_calls: int = 200_000) -> dict[str, Any]:
    """Run every measurement and return the figures with their conditions."""
    return {
        "benchmark": "latent_prompt",
        "shapes": {"latent": list(LATENT_SHAPE), "embeds": [1, SEQ, HIDDEN]},
        "device": "cpu",
        "conditions": conditions(),
        "latent_for_state": bench_latents(frames),
        "prompt": bench_prompt(frames),
        "profiler": bench_profiler(profiler_calls),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames per measurement")
    parser.add_argument("--profiler-calls", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the JSON goes")
    args = parser.parse_args(argv)
    results = run(args.frames, args.profiler_calls)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for walk, figures in results["latent_for_state"].items():
        print(f"latent {walk:<20} {figures['median_us']:9.1f} us/frame")
    blend = results["prompt"]["blend_for_state"]
    print(f"prompt blend_for_state      {blend['median_us']:9.1f} us/frame")
    prof = results["profiler"]
    print(f"profiler disabled overhead  {prof['disabled_overhead_ns']:9.1f} ns/block")
    print(f"profiler enabled overhead   {prof['enabled_overhead_ns']:9.1f} ns/block")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

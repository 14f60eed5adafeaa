"""Real architectures at their real sizes, random weights: parameter counts, per-stage times,
peak memory, through the engine.

Each architecture is built from its published config (the files the package ships for offline
single-file loading, ``engine/diffusion/data/configs``), with random weights (speed does not
depend on weight values), CLIP's real tokenizer and a TAESD-shaped decoder (``AutoencoderTiny()``,
the engine's default VAE: ``taesd`` for SD, ``taesdxl`` has the same shape for SDXL):

- ``sd15-512``: SD 1.5 (and SD-Turbo's 1.x cousins) at 512x512;
- ``sd21-512``: SD 2.1 base, the architecture of SD-Turbo (the default model), at 512x512;
- ``sdxl-512``: SDXL at 512x512 (SDXL-Turbo's size); ``sdxl-1024``: SDXL at 1024x1024;
- ``sdxs-512``: SDXS-512's smaller unet, from ``--sdxs-config`` (its published ``unet``
  config.json, fetched once: ``hf download IDKiro/sdxs-512-0.9 unet/config.json``); without it
  the row says it was not measured.

Parameter counts are compared with the published ones (SD 1.5 unet 859.52 M, SD 2.1 865.91 M,
SDXL 2.567 B, the text encoders 123.06 M / 340.39 M / 694.66 M). Per stage: prompt encoding,
one unet step (the engine's ``denoise``, one step), the TAESD decode, and whole frames through
the streaming wrapper (``generate_frame_with_coherence``, coherence on), as many as the time
budget allows (at least one). Each architecture runs in its own process, one after another, so
its peak memory (resident set on the CPU, allocated on CUDA) is its own and memory is freed in
between. SD 1.5 is also saved in fp16 to a temporary folder and loaded back through the engine's
real loading code (folder load, fp16 weights read into float32 on the CPU), with one frame
decoded by its full VAE.

On this project's 2-core CPU SDXL at 1024x1024 takes about a minute a frame: the CPU run
measures one step and one frame of each and records the conditions; ``--device cuda`` on a GPU
measures many frames in fp16 (``--frames``). ``--smoke`` runs the tiny built-in shapes at 64x64
(tests). Run: ``python -m benchmarks.bench_models`` (``--help``). Writes
``benchmarks/results/models.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from benchmarks.bench_engine import PROMPT, RESULTS, load_average, versions, write_results

CLIP_L = 123_060_480
OPENCLIP_H = 340_387_840
OPENCLIP_BIGG = 694_659_840


@dataclass(frozen=True)
class Architecture:
    label: str
    family: str  # a shipped config folder, or a tiny model's name (smoke)
    size: int
    published_unet: int | None = None
    published_text: tuple[int, ...] = field(default=())
    xl: bool = False


ARCHITECTURES: dict[str, Architecture] = {
    "sd15-512": Architecture("SD 1.5", "sd1", 512, 859_520_964, (CLIP_L,)),
    "sd21-512": Architecture("SD 2.1 base (SD-Turbo)", "sd2", 512, 865_910_724, (OPENCLIP_H,)),
    "sdxl-512": Architecture(
        "SDXL (SDXL-Turbo size)", "sdxl", 512, 2_567_463_684, (CLIP_L, OPENCLIP_BIGG), xl=True
    ),
    "sdxl-1024": Architecture(
        "SDXL", "sdxl", 1024, 2_567_463_684, (CLIP_L, OPENCLIP_BIGG), xl=True
    ),
    "sdxs-512": Architecture("SDXS-512 (unet from --sdxs-config)", "sdxs", 512),
}
SMOKE: dict[str, Architecture] = {
    "tiny": Architecture("tiny (untrained)", "tiny", 64),
    "tiny-sd2": Architecture("tiny-sd2 (untrained)", "tiny-sd2", 64),
    "tiny-sdxl": Architecture("tiny-sdxl (untrained)", "tiny-sdxl", 64, xl=True),
}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_pipeline(
    arch: Architecture,
    device: torch.device,
    dtype: torch.dtype,
    sdxs_config: Path | None,
    *,
    full_vae: bool = False,
) -> Any:
    """A diffusers pipeline of the architecture, random weights, built on the device."""
    import diffusers
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from engine.diffusion.clip_tokenizer import clip_tokenizer
    from engine.diffusion.single_file import CONFIGS, FAMILIES
    from engine.diffusion.tiny import build_tiny_pipeline, few_step_scheduler

    if arch.family in SMOKE:
        vae_kind: Literal["kl", "tiny"] = "kl" if full_vae else "tiny"
        return build_tiny_pipeline(0, arch.size, arch.size, name=arch.family, vae=vae_kind)
    folder = CONFIGS / ("sd2" if arch.family == "sdxs" else arch.family)
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    if arch.family == "sdxs":
        if sdxs_config is None:
            raise FileNotFoundError("needs --sdxs-config")
        unet_config = json.loads(sdxs_config.read_text())
    torch.manual_seed(0)
    with torch.device(device):
        unet: Any = UNet2DConditionModel.from_config(unet_config)
        encoders: list[Any] = [
            CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder")))
        ]
        if arch.xl:
            encoders.append(
                CLIPTextModelWithProjection(
                    CLIPTextConfig.from_pretrained(str(folder / "text_encoder_2"))
                )
            )
        vae: Any = (
            AutoencoderKL.from_config(json.loads((folder / "vae" / "config.json").read_text()))
            if full_vae
            else AutoencoderTiny()
        )
    pads = FAMILIES["sd2" if arch.family == "sdxs" else arch.family].pads
    components: dict[str, Any] = {
        "unet": unet,
        "vae": vae,
        "text_encoder": encoders[0],
        "tokenizer": clip_tokenizer(pads[0]),
        "scheduler": few_step_scheduler(),
    }
    for module in (unet, vae, *encoders):
        module.to(dtype=dtype).eval().requires_grad_(False)
    if arch.xl:
        components.update(text_encoder_2=encoders[1], tokenizer_2=clip_tokenizer(pads[1]))
        return diffusers.StableDiffusionXLPipeline(
            **components, force_zeros_for_empty_prompt=True, add_watermarker=False
        )
    return diffusers.StableDiffusionPipeline(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )


def parameters(pipe: Any, arch: Architecture) -> dict[str, Any]:
    encoders = [
        e for e in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if e is not None
    ]
    counts: dict[str, Any] = {
        "unet": count(pipe.unet),
        "text_encoders": [count(e) for e in encoders],
        "decoder": count(pipe.vae),
    }
    if arch.published_unet is not None:
        counts["published_unet"] = arch.published_unet
        counts["published_text_encoders"] = list(arch.published_text)
        counts["matches_published"] = (
            counts["unet"] == arch.published_unet
            and tuple(counts["text_encoders"]) == arch.published_text
        )
    return counts


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls (synchronised on CUDA)."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return times[len(times) // 2]


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    # linux reports the resident-set peak in KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(
    arch: Architecture, *, device: str, frames: int, budget_s: float, sdxs_config: Path | None
) -> dict[str, Any]:
    """One architecture in this process: build, count, time each stage and whole frames."""
    from engine.config import DiffusionConfig, InferenceConfig, StreamConfig
    from engine.diffusion.device import resolve_device, resolve_dtype
    from engine.diffusion.sd15 import SD15Pipeline
    from engine.diffusion.sdxl import SDXLPipeline
    from engine.diffusion.stream import StreamDiffusionPipeline

    torch_device = resolve_device(device)
    dtype = resolve_dtype("auto", torch_device)
    started = time.perf_counter()
    pipe = build_pipeline(arch, torch_device, dtype, sdxs_config)
    build_s = time.perf_counter() - started
    row: dict[str, Any] = {
        "label": arch.label,
        "size": f"{arch.size}x{arch.size}",
        "dtype": str(dtype).removeprefix("torch."),
        "parameters": parameters(pipe, arch),
        "build_s": round(build_s, 1),
    }
    driver = SDXLPipeline if arch.xl else SD15Pipeline
    diffusion = DiffusionConfig(
        model=arch.family, device=str(torch_device), scheduler="euler_ancestral", seed=0
    )
    inference = InferenceConfig(height=arch.size, width=arch.size, num_inference_steps=1)
    engine = driver(diffusion, inference, pipe=pipe, label=f"{arch.label}, random weights")
    engine.load_model()
    if torch_device.type == "cpu" and arch.family not in SMOKE:
        # the cpu trace only trims python overhead (well under 1 % of a multi-second step) and
        # would cost a whole extra forward to record: real sizes run the unet eagerly
        engine._traced_unet = None
    generator = torch.Generator().manual_seed(1)
    latent = torch.randn(engine.get_latent_shape(), generator=generator)
    with torch.inference_mode():
        cond = engine.encode_prompt(PROMPT)
        repeats = 3 if torch_device.type == "cuda" or arch.family in SMOKE else 1
        clean: list[torch.Tensor] = []
        stages = {
            "text_encode_ms": timed(lambda: engine.encode_prompt(PROMPT), torch_device, repeats),
            "unet_step_ms": timed(
                lambda: clean.append(engine.denoise(latent, cond)), torch_device, repeats
            ),
        }
        stages["decode_taesd_ms"] = timed(lambda: engine.decode(clean[-1]), torch_device, repeats)
    stream = StreamDiffusionPipeline(engine, StreamConfig(enable_temporal_coherence=True))
    embeds = stream.encode_prompt(PROMPT)
    if torch_device.type == "cuda" or arch.family in SMOKE:
        stream.generate_frame_with_coherence(latent, embeds, 0.5)  # warm-up, not timed
    frame_times = []
    begin = time.perf_counter()
    for _ in range(frames):
        noise = torch.randn(engine.get_latent_shape(), generator=generator)
        start = time.perf_counter()
        frame = stream.generate_frame_with_coherence(noise, embeds, 0.5)
        frame_times.append((time.perf_counter() - start) * 1000)
        if time.perf_counter() - begin > budget_s:
            break
    stages["frame_ms_median"] = sorted(frame_times)[len(frame_times) // 2]
    row.update(
        stages_ms={k: round(v, 1) for k, v in stages.items()},
        frames_measured=len(frame_times),
        fps=round(1000 / stages["frame_ms_median"], 3),
        frame_shape=list(frame.shape),
        peak_memory_gib=round(peak_memory_gib(torch_device), 2),
        peak_memory_kind="cuda allocated"
        if torch_device.type == "cuda"
        else "process resident set",
        # other work on the machine slows cpu figures by about this many runnable processes
        load_average_at_end=load_average(),
    )
    return row


def fp16_roundtrip(*, device: str, smoke: bool) -> dict[str, Any]:
    """SD 1.5 saved in fp16 and loaded back through the engine's folder loading, one frame."""
    from engine.config import DiffusionConfig, InferenceConfig
    from engine.diffusion.base import create_pipeline
    from engine.diffusion.device import resolve_device

    arch = SMOKE["tiny"] if smoke else ARCHITECTURES["sd15-512"]
    torch_device = resolve_device(device)
    pipe = build_pipeline(arch, torch.device("cpu"), torch.float32, None, full_vae=True)
    with tempfile.TemporaryDirectory(prefix="hamba-sd15-fp16-") as folder:
        started = time.perf_counter()
        pipe.to(dtype=torch.float16).save_pretrained(folder)
        save_s = time.perf_counter() - started
        del pipe
        disk = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
        diffusion = DiffusionConfig(
            model=folder, device=str(torch_device), use_tiny_vae=False, local_files_only=True
        )
        inference = InferenceConfig(height=arch.size, width=arch.size)
        started = time.perf_counter()
        engine = create_pipeline(diffusion, inference)
        engine.load_model()
        load_s = time.perf_counter() - started
        if torch_device.type == "cpu" and not smoke:
            engine._traced_unet = None  # type: ignore[attr-defined]  # see measure()
        latent = torch.randn(engine.get_latent_shape(), generator=torch.Generator().manual_seed(1))
        started = time.perf_counter()
        frame = engine.generate_batch(latent, engine.encode_prompt(PROMPT))
        frame_s = time.perf_counter() - started
    return {
        "label": f"{arch.label} saved in fp16, loaded through the folder loader",
        "disk_gib": round(disk / 2**30, 2),
        "save_s": round(save_s, 1),
        "load_s": round(load_s, 1),
        "frame_with_full_vae_s": round(frame_s, 2),
        "loaded_dtype": str(engine.dtype).removeprefix("torch."),
        "frame_shape": list(frame.shape[1:]),
        "peak_memory_gib": round(peak_memory_gib(torch_device), 2),
        "load_average_at_end": load_average(),
    }


def run_child(name: str, argv: list[str]) -> dict[str, Any]:
    """One architecture in a fresh process (its own peak memory, everything freed after)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        target = Path(out.name)
    try:
        command = [
            sys.executable,
            "-m",
            "benchmarks.bench_models",
            "--one",
            name,
            "--out",
            str(target),
            *argv,
        ]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode:
            return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
        result: dict[str, Any] = json.loads(target.read_text())
        return result
    finally:
        target.unlink(missing_ok=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", help=f"comma-separated subset of {', '.join(ARCHITECTURES)}")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--frames",
        type=int,
        help="frames to time per architecture (default: 2 on the cpu, 100 on a gpu)",
    )
    parser.add_argument("--budget-s", type=float, default=120.0, help="stop timing frames after")
    parser.add_argument("--sdxs-config", type=Path, help="SDXS-512's unet config.json")
    parser.add_argument("--smoke", action="store_true", help="the tiny shapes at 64x64")
    parser.add_argument("--no-roundtrip", action="store_true", help="skip the fp16 save/load")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", type=Path, help="results JSON (default benchmarks/results/models.json)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    table = SMOKE if args.smoke else ARCHITECTURES
    on_gpu = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    frames = args.frames or (100 if on_gpu else 2)
    if args.one is not None:
        if args.one == "roundtrip":
            row = fp16_roundtrip(device=args.device, smoke=args.smoke)
        else:
            row = measure(
                table[args.one],
                device=args.device,
                frames=frames,
                budget_s=args.budget_s,
                sdxs_config=args.sdxs_config,
            )
        assert args.out is not None
        args.out.write_text(json.dumps(row))
        return 0
    names = args.archs.split(",") if args.archs else list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        print(f"unknown architecture {', '.join(unknown)}: choose from {', '.join(table)}")
        return 2
    child_argv = [
        "--device",
        args.device,
        "--frames",
        str(frames),
        "--budget-s",
        str(args.budget_s),
    ]
    if args.smoke:
        child_argv.append("--smoke")
    if args.sdxs_config is not None:
        child_argv += ["--sdxs-config", str(args.sdxs_config)]
    results: dict[str, Any] = {"architectures": {}}
    load_at_start = load_average()
    for name in names:
        if table[name].family == "sdxs" and args.sdxs_config is None:
            results["architectures"][name] = {
                "label": table[name].label,
                "not_measured": "SDXS-512's published unet config cannot be read offline here: "
                "pass --sdxs-config with IDKiro/sdxs-512-0.9's unet/config.json",
            }
            continue
        print(f"== {name}", flush=True)
        results["architectures"][name] = run_child(name, child_argv)
        print(json.dumps(results["architectures"][name]), flush=True)
    if not args.no_roundtrip:
        print("== sd15 fp16 save/load", flush=True)
        results["fp16_roundtrip"] = run_child("roundtrip", child_argv)
        print(json.dumps(results["fp16_roundtrip"]), flush=True)
    results["conditions"] = {
        **versions(),
        "device": "cuda" if on_gpu else "cpu",
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "weights": "random (speed does not depend on weight values)",
        "decoder": "AutoencoderTiny() (TAESD-shaped) unless stated",
        "steps": 1,
        "guidance": "off",
        "frames_requested": frames,
        "frame_budget_s": args.budget_s,
        "load_average_at_start": load_at_start,
        "load_average_at_end": load_average(),
    }
    out = args.out or RESULTS / "models.json"
    write_results(results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

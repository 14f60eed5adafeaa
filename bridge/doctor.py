"""`hamba devices`, `hamba models` and `hamba check`: what this machine can do, before the show."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from engine.errors import HambaError


def _listing(title: str, names: Callable[[], Sequence[object]]) -> list[str]:
    """``title:`` and an indented line per name, or why there are none (the failure's message)."""
    lines = [f"{title}:"]
    try:
        found = names()
    except HambaError as exc:
        return [*lines, f"  (none: {exc})"]
    return [*lines, *(f"  {name}" for name in found)] if found else [*lines, "  (none found)"]


def describe_midi() -> list[str]:
    """The MIDI input and output ports as lines (or why there are none)."""
    from bridge.midi.ports import port_names

    lines: list[str] = []
    for kind in ("input", "output"):
        lines.extend(_listing(f"midi {kind}s", partial(port_names, kind)))
    return lines


def describe_devices() -> str:
    """Audio inputs, MIDI ports and the frame outputs that work on this machine, as text."""
    from bridge.outputs.base import available_outputs
    from engine.audio.live import list_input_devices

    lines = _listing("audio inputs", list_input_devices)
    lines.extend(describe_midi())
    lines.append("outputs:")
    for kind, available, reason in available_outputs():
        mark = "yes" if available else "no "
        lines.append(f"  {mark} {kind:<8} {reason}")
    return "\n".join(lines)


def run_checks(*, model: str = "tiny", device: str = "auto") -> tuple[str, bool]:
    """Check torch, the device, a model load and one frame, and the outputs; (report, all ok)."""
    import torch

    from engine.config import DiffusionConfig, InferenceConfig

    ok = True
    lines = [
        f"python   {platform.python_version()} on {platform.system()} {platform.machine()}",
        f"torch    {torch.__version__}",
        f"cuda     {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}",
        f"mps      {'yes' if torch.backends.mps.is_available() else 'no'}",
    ]
    try:
        from engine.diffusion.base import create_pipeline
        from engine.diffusion.tiny import is_tiny_model

        size = 128 if is_tiny_model(model) else 512
        started = time.perf_counter()
        pipe = create_pipeline(
            DiffusionConfig(model=model, device=device),
            InferenceConfig(height=size, width=size, num_inference_steps=1),
        )
        loaded = time.perf_counter() - started
        lines.append(
            f"model    {pipe.model_label} on {pipe.device} ({pipe.dtype}), loaded in {loaded:.1f} s"
        )
        latents = torch.randn(pipe.get_latent_shape(), device=pipe.device, dtype=pipe.dtype)
        embeds = pipe.encode_prompt("check")
        started = time.perf_counter()
        frame = pipe.generate_batch(latents, embeds)[0]
        lines.append(
            f"frame    {frame.shape[1]}x{frame.shape[0]} RGBA in {(time.perf_counter() - started) * 1000:.0f} ms"
        )
    except HambaError as exc:
        ok = False
        lines.append(f"model    FAILED: {exc}")
    lines.append(describe_devices())
    lines.append("all checks passed" if ok else "some checks failed")
    return "\n".join(lines), ok


def describe_models(paths: Sequence[str | Path] = (), *, device: str = "auto") -> str:
    """The models in the hub cache and under ``paths``: kind, parameters, dtype, size on disk
    and whether they fit this machine's device and memory, as a table."""
    from engine.diffusion.inventory import describe_model, device_budget, find_models
    from engine.diffusion.tiny import TINY_MODELS

    budget = device_budget(device)
    lines = [
        f"device   {budget.device} ({str(budget.run_dtype).removeprefix('torch.')}), "
        f"{budget.memory_bytes / 2**30:.1f} GiB for models",
        f"built in {', '.join(TINY_MODELS)} (untrained random weights, for tests and demos)",
    ]
    models = find_models(paths)
    if not models:
        lines.append("no models found in the Hugging Face cache or the paths given")
        return "\n".join(lines)
    header = (
        f"{'model':<48} {'where':<6} {'kind':<5} {'params':>8} {'dtype':<9} {'disk':>8}  runs here"
    )
    lines.append(header)
    for model in models:
        entry = describe_model(model, budget)
        params = f"{entry.parameters / 1e9:.2f} B" if entry.parameters else "?"
        disk = f"{entry.disk_bytes / 2**30:.2f} GB"
        fit = "yes" if entry.fits else "no"
        if entry.problem:
            fit = f"no: {entry.problem}"
        elif not entry.fits:
            fit = "no: too large for this device's memory"
        elif budget.device == "cpu":
            fit = "yes (cpu: slow)"
        lines.append(
            f"{entry.model:<48} {entry.where:<6} {entry.kind:<5} {params:>8} {entry.dtype:<9} "
            f"{disk:>8}  {fit}"
        )
    return "\n".join(lines)

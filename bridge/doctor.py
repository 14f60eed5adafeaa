"""`hamba devices` and `hamba check`: what this machine can do, before the show starts."""

from __future__ import annotations

import platform
import time

from engine.errors import HambaError


def describe_midi() -> list[str]:
    """The MIDI input and output ports as lines (or why there are none)."""
    from bridge.midi.ports import port_names

    lines: list[str] = []
    for kind in ("input", "output"):
        lines.append(f"midi {kind}s:")
        try:
            names = port_names(kind)
        except HambaError as exc:
            lines.append(f"  (none: {exc})")
            continue
        lines.extend(f"  {name}" for name in names)
        if not names:
            lines.append("  (none found)")
    return lines


def describe_devices() -> str:
    """Audio inputs, MIDI ports and the frame outputs that work on this machine, as text."""
    from bridge.outputs.base import available_outputs
    from engine.audio.live import list_input_devices

    lines = ["audio inputs:"]
    try:
        devices = list_input_devices()
    except HambaError as exc:
        lines.append(f"  (none: {exc})")
    else:
        if not devices:
            lines.append("  (none found)")
        for device in devices:
            lines.append(f"  {device}")
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

        size = 128 if model == "tiny" else 512
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

"""Which device and precision a model runs with: ``auto`` resolved, impossible choices refused."""

from __future__ import annotations

import torch

from engine.errors import ModelError

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an unavailable device is a ModelError naming it."""
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(
                f"diffusion.device {spec!r}: no CUDA device is available here (use auto or cpu)"
            )
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ModelError(
                f"diffusion.device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    if device.type == "mps" and not _mps_available():
        raise ModelError(f"diffusion.device {spec!r}: Metal (mps) is not available here")
    return device


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """``auto`` is float16 on cuda and mps, float32 on cpu (half precision is slow there)."""
    if spec == "auto":
        return torch.float16 if device.type in {"cuda", "mps"} else torch.float32
    try:
        return _DTYPES[spec]
    except KeyError:
        raise ModelError(
            f"diffusion.dtype {spec!r} is not one of auto, {', '.join(_DTYPES)}"
        ) from None


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())

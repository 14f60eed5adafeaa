"""Which device and precision a model runs with (``auto`` resolved, impossible choices refused),
and what to do when its memory runs out."""

from __future__ import annotations

import gc

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


def release_cached_memory(device: torch.device) -> None:
    """Give the allocator's cached blocks back to the device (after it ran out of memory)."""
    gc.collect()  # tensors only a reference cycle still holds
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.type == "mps" and _mps_available():
        torch.mps.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says the device (or the host) ran out of memory."""
    if isinstance(exc, MemoryError):
        return True
    # torch.OutOfMemoryError (cuda, xpu) is a RuntimeError; mps says "MPS backend out of memory"
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()

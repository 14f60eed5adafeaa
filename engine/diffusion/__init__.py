"""Diffusion pipelines: the model kinds and the streaming wrapper (loaded on first use)."""

from typing import TYPE_CHECKING

from engine.lazy import lazy_exports

if TYPE_CHECKING:
    from engine.diffusion.sd15 import SD15Pipeline
    from engine.diffusion.stream import StreamDiffusionPipeline

__all__ = ["SD15Pipeline", "StreamDiffusionPipeline"]

__getattr__ = lazy_exports(
    __name__,
    {"SD15Pipeline": "engine.diffusion.sd15", "StreamDiffusionPipeline": "engine.diffusion.stream"},
)

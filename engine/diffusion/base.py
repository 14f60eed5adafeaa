"""The abstract diffusion pipeline every model kind implements, and the registry of kinds.

A pipeline turns noise latents and prompt embeddings into frames: ``H x W x 4`` RGBA ``uint8``,
C-contiguous. Its pieces are exposed separately (``denoise``, ``decode``, ``encode_image``,
``predict_x0``) so that :mod:`engine.diffusion.stream` can build temporal coherence, img2img
feedback and the stream batch from them without knowing the model.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from engine.config import DiffusionConfig, InferenceConfig
from engine.diffusion.host import PendingFrames, ReadyFrames
from engine.diffusion.schedule import StepSchedule
from engine.errors import ModelError
from engine.logs import quiet_unused_image_processors

# before any model kind imports diffusers: its pipelines import image processors we never use
quiet_unused_image_processors()

Frames = npt.NDArray[np.uint8]


@dataclass(frozen=True, eq=False)
class RenderResult:
    """Frames ``(B, H, W, 4)`` RGBA ``uint8`` and the clean latents they were decoded from."""

    frames: Frames
    latents: torch.Tensor


@dataclass(frozen=True, eq=False)
class PendingRender:
    """A launched render: clean latents now (device tensors, ordered by the device's stream),
    frames once :meth:`PendingFrames.wait` returns."""

    frames: PendingFrames
    latents: torch.Tensor

    @classmethod
    def done(cls, result: RenderResult) -> PendingRender:
        return cls(ReadyFrames(result.frames), result.latents)

    def wait(self) -> RenderResult:
        return RenderResult(self.frames.wait(), self.latents)


class BaseDiffusionPipeline(ABC):
    """A model that renders frames from latents and prompt embeddings.

    ``is_untrained`` is true for the built-in tiny model (random weights): every user-facing
    label says so through ``model_label``.
    """

    device: torch.device
    dtype: torch.dtype
    is_untrained: bool
    model_label: str
    # read at every call: a change of steps or guidance applies at the next frame
    inference_config: InferenceConfig

    @abstractmethod
    def load_model(self) -> None:
        """Load (or build) the weights onto the device; idempotent."""

    @abstractmethod
    def encode_prompt(self, prompt: str | list[str]) -> torch.Tensor:
        """Prompt embeddings ``(n, seq_len, hidden)`` on the device, in the model's dtype."""

    @abstractmethod
    def get_latent_shape(self) -> tuple[int, int, int, int]:
        """The shape of one frame's noise latent: ``(1, 4, H // 8, W // 8)``."""

    @abstractmethod
    def step_schedule(self, strength: float = 1.0) -> StepSchedule:
        """The current steps' timesteps and noise levels at ``strength`` (cached)."""

    @abstractmethod
    def predict_x0(
        self,
        samples: torch.Tensor,
        step_indices: torch.Tensor,
        prompt_embeds: torch.Tensor,
        schedule: StepSchedule,
    ) -> torch.Tensor:
        """One batched unet call: the clean latents of ``samples``, each at its own step."""

    @abstractmethod
    def denoise(
        self,
        latents: torch.Tensor,
        prompt_embeds: torch.Tensor,
        *,
        strength: float = 1.0,
        init_latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Clean latents from noise ``latents`` (``init_latents`` noised to ``strength`` when
        given: img2img)."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> Frames:
        """Clean latents to frames ``(B, H, W, 4)`` RGBA ``uint8``, C-contiguous."""

    @abstractmethod
    def encode_image(self, images: Frames) -> torch.Tensor:
        """RGBA (or RGB) ``uint8`` images ``(B, H, W, C)`` or ``(H, W, C)`` to clean latents."""

    @abstractmethod
    def render(
        self,
        latents: torch.Tensor,
        prompt_embeds: torch.Tensor,
        *,
        strength: float = 1.0,
        init_latents: torch.Tensor | None = None,
    ) -> RenderResult:
        """Denoise and decode in one step (the fast path): frames and their clean latents."""

    def launch(
        self,
        latents: torch.Tensor,
        prompt_embeds: torch.Tensor,
        *,
        strength: float = 1.0,
        init_latents: torch.Tensor | None = None,
    ) -> PendingRender:
        """Start :meth:`render` and return without waiting for the frames where the device
        allows it (CUDA: kernels queued, copy to host in flight); by default it renders now."""
        return PendingRender.done(
            self.render(latents, prompt_embeds, strength=strength, init_latents=init_latents)
        )

    def launch_decode(self, latents: torch.Tensor) -> PendingFrames:
        """Start :meth:`decode` without waiting for the frames (by default it decodes now)."""
        return ReadyFrames(self.decode(latents))

    @abstractmethod
    def supports_pooled_embeds(self) -> bool:
        """Whether the model also takes pooled text embeddings (SDXL-style)."""

    def generate_batch(self, latents: torch.Tensor, prompt_embeds: torch.Tensor) -> Frames:
        """Frames ``(B, H, W, 4)`` from noise ``latents (B, 4, h, w)`` and ``prompt_embeds``
        ``(B, seq, hidden)`` or ``(1, seq, hidden)`` (shared by the batch)."""
        return self.render(latents, prompt_embeds).frames


PipelineFactory = Callable[[DiffusionConfig, InferenceConfig], BaseDiffusionPipeline]


def _sd15(diffusion: DiffusionConfig, inference: InferenceConfig) -> BaseDiffusionPipeline:
    from engine.diffusion.sd15 import SD15Pipeline

    return SD15Pipeline(diffusion, inference)


# model kinds by name; the tiny model is SD-shaped, so the SD 1.5 driver runs it too
MODEL_KINDS: dict[str, PipelineFactory] = {"tiny": _sd15, "sd15": _sd15}

# modules that register more built-in kinds when imported (light: no model library at import)
_BUILTIN_KIND_MODULES = ("engine.diffusion.null",)


def register_model_kind(name: str, factory: PipelineFactory) -> None:
    """Add (or replace) a model kind."""
    MODEL_KINDS[name] = factory


def _register_builtin_kinds() -> None:
    for module in _BUILTIN_KIND_MODULES:
        importlib.import_module(module)  # each registers its kinds once, on first import


def model_kind(diffusion: DiffusionConfig) -> str:
    """The kind that runs ``diffusion.model``: the kind of that name when ``diffusion.model``
    is itself a registered model (``tiny``, ``null``, ``null-fixed``), else ``sd15``."""
    _register_builtin_kinds()
    return diffusion.model if diffusion.model in MODEL_KINDS else "sd15"


def create_pipeline(
    diffusion: DiffusionConfig, inference: InferenceConfig
) -> BaseDiffusionPipeline:
    """The pipeline for ``diffusion.model`` (not yet loaded: call ``load_model``)."""
    kind = model_kind(diffusion)
    try:
        factory = MODEL_KINDS[kind]
    except KeyError:
        raise ModelError(
            f"model kind {kind!r} (for {diffusion.model}) is not registered "
            f"({', '.join(sorted(MODEL_KINDS))})"
        ) from None
    return factory(diffusion, inference)

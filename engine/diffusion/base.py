"""The abstract diffusion pipeline every model kind implements, and the registry of kinds.

A pipeline turns noise latents and prompt embeddings into frames: ``H x W x 4`` RGBA ``uint8``,
C-contiguous. Its pieces are exposed separately (``denoise``, ``decode``, ``encode_image``,
``predict_x0``) so that :mod:`engine.diffusion.stream` can build temporal coherence, img2img
feedback and the stream batch from them without knowing the model. Prompt embeddings are a
tensor (SD 1.x/2.x) or a :class:`~engine.diffusion.conditioning.TextConditioning` (SDXL: with
pooled embeddings); every method takes either (:data:`Conditioning`).

Model kinds live in a registry: a name and a factory, and optionally a detector that says,
from what a model is (:class:`~engine.diffusion.identify.ModelInfo`: the pipeline class of a
folder or cached hub snapshot, the family of a single checkpoint), whether the kind runs it.
A ``diffusion.model`` that is itself a registered name (``tiny``, ``tiny-sd2``, ``tiny-sdxl``,
or a plugin's built-in model) uses that entry directly; anything else is identified and given to
the most recently registered kind whose detector accepts it (plugins before the built-ins).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic

import numpy as np
import numpy.typing as npt
import torch

from engine.config import DiffusionConfig, InferenceConfig
from engine.diffusion.conditioning import Conditioning, ConditioningT_co
from engine.diffusion.host import PendingFrames, ReadyFrames
from engine.diffusion.schedule import StepSchedule
from engine.errors import ModelError, RenderError
from engine.logs import quiet_unused_image_processors

# before any model kind imports diffusers: its pipelines import image processors we never use
quiet_unused_image_processors()

if TYPE_CHECKING:
    from engine.diffusion.identify import ModelInfo

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


class BaseDiffusionPipeline(ABC, Generic[ConditioningT_co]):
    """A model that renders frames from latents and prompt embeddings.

    Its type parameter is what ``encode_prompt`` returns (see ``ConditioningT_co``).

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

    # the text classifier-free guidance pushes away from ("" until set)
    negative_prompt: str = ""

    @abstractmethod
    def encode_prompt(self, prompt: str | list[str]) -> ConditioningT_co:
        """Prompt embeddings ``(n, seq_len, hidden)`` on the device, in the model's dtype (a
        tensor; SDXL-style kinds return a ``TextConditioning`` with pooled embeddings)."""

    def set_negative_prompt(self, text: str) -> None:
        """The negative prompt, used as the unconditional input whenever guidance is on; a
        kind that caches its encoding re-encodes at the next guided frame after a change."""
        self.negative_prompt = text

    @abstractmethod
    def get_latent_shape(self) -> tuple[int, int, int, int]:
        """The shape of one frame's noise latent: ``(1, 4, H // 8, W // 8)``."""

    def _check_latents(self, latents: torch.Tensor) -> None:
        """RenderError unless ``latents`` is a batch of this model's frame latents."""
        shape = self.get_latent_shape()
        if latents.ndim != 4 or tuple(latents.shape[1:]) != shape[1:]:
            raise RenderError(
                f"latents: expected (B, {shape[1]}, {shape[2]}, {shape[3]}), "
                f"got {tuple(latents.shape)}"
            )

    @abstractmethod
    def step_schedule(self, strength: float = 1.0) -> StepSchedule:
        """The current steps' timesteps and noise levels at ``strength`` (cached)."""

    @abstractmethod
    def predict_x0(
        self,
        samples: torch.Tensor,
        step_indices: torch.Tensor,
        prompt_embeds: Conditioning,
        schedule: StepSchedule,
    ) -> torch.Tensor:
        """One batched unet call: the clean latents of ``samples``, each at its own step."""

    @abstractmethod
    def denoise(
        self,
        latents: torch.Tensor,
        prompt_embeds: Conditioning,
        *,
        strength: float = 1.0,
        init_latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Clean latents from noise ``latents`` (``init_latents`` noised to ``strength`` when
        given: img2img)."""

    def decode(self, latents: torch.Tensor) -> Frames:
        """Clean latents to frames ``(B, H, W, 4)`` RGBA ``uint8``, C-contiguous."""
        return self.launch_decode(latents).wait()

    @abstractmethod
    def launch_decode(self, latents: torch.Tensor) -> PendingFrames:
        """Start :meth:`decode` and return without waiting for the frames where the device
        allows it (a kind with nothing to overlap decodes now and returns ``ReadyFrames``)."""

    @abstractmethod
    def encode_image(self, images: Frames) -> torch.Tensor:
        """RGBA (or RGB) ``uint8`` images ``(B, H, W, C)`` or ``(H, W, C)`` to clean latents."""

    def render(
        self,
        latents: torch.Tensor,
        prompt_embeds: Conditioning,
        *,
        strength: float = 1.0,
        init_latents: torch.Tensor | None = None,
    ) -> RenderResult:
        """Denoise and decode in one step (the fast path): frames and their clean latents."""
        return self.launch(
            latents, prompt_embeds, strength=strength, init_latents=init_latents
        ).wait()

    @abstractmethod
    def launch(
        self,
        latents: torch.Tensor,
        prompt_embeds: Conditioning,
        *,
        strength: float = 1.0,
        init_latents: torch.Tensor | None = None,
    ) -> PendingRender:
        """Start :meth:`render` and return without waiting for the frames where the device
        allows it (CUDA: kernels queued, copy to host in flight); a kind with nothing to
        overlap renders now and returns ``PendingRender.done(result)``."""

    @abstractmethod
    def supports_pooled_embeds(self) -> bool:
        """Whether the model also takes pooled text embeddings (SDXL-style)."""

    def generate_batch(self, latents: torch.Tensor, prompt_embeds: Conditioning) -> Frames:
        """Frames ``(B, H, W, 4)`` from noise ``latents (B, 4, h, w)`` and ``prompt_embeds``
        ``(B, seq, hidden)`` or ``(1, seq, hidden)`` (shared by the batch)."""
        return self.render(latents, prompt_embeds).frames


def prompt_texts(prompt: str | list[str]) -> list[str]:
    """What ``encode_prompt`` was given, as a list of texts (RenderError when it is empty)."""
    texts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not texts:
        raise RenderError("encode_prompt: no prompt given")
    return texts


PipelineFactory = Callable[[DiffusionConfig, InferenceConfig], BaseDiffusionPipeline]
Detector = Callable[["ModelInfo"], bool]


def _sd(diffusion: DiffusionConfig, inference: InferenceConfig) -> BaseDiffusionPipeline:
    from engine.diffusion.sd15 import SD15Pipeline

    return SD15Pipeline(diffusion, inference)


def _sdxl(diffusion: DiffusionConfig, inference: InferenceConfig) -> BaseDiffusionPipeline:
    from engine.diffusion.sdxl import SDXLPipeline

    return SDXLPipeline(diffusion, inference)


# modules that register more built-in kinds when imported (light: no model library at import)
_BUILTIN_KIND_MODULES = ("engine.diffusion.null",)


def _is_sd(info: ModelInfo) -> bool:
    from engine.diffusion.loading import SD_PIPELINE_CLASSES

    return info.pipeline_class in SD_PIPELINE_CLASSES


def _is_sdxl(info: ModelInfo) -> bool:
    from engine.diffusion.loading import SDXL_PIPELINE_CLASSES

    return info.pipeline_class in SDXL_PIPELINE_CLASSES


# every registered name and its factory: the kinds (sd, sdxl; sd15 is sd's former name) and the
# built-in models that run on them
MODEL_KINDS: dict[str, PipelineFactory] = {
    "sd": _sd,
    "sd15": _sd,
    "sdxl": _sdxl,
    "tiny": _sd,
    "tiny-sd2": _sd,
    "tiny-sdxl": _sdxl,
}
# the kinds that identified models can be given to, in registration order
MODEL_DETECTORS: dict[str, Detector] = {"sd": _is_sd, "sdxl": _is_sdxl}


def register_model_kind(
    name: str, factory: PipelineFactory, *, detect: Detector | None = None
) -> None:
    """Add (or replace) a model kind or built-in model. ``detect`` makes it reachable for models
    given by path or hub id: it is asked before the kinds registered earlier."""
    MODEL_KINDS[name] = factory
    if detect is not None:
        MODEL_DETECTORS.pop(name, None)
        MODEL_DETECTORS[name] = detect


def _register_builtin_kinds() -> None:
    for module in _BUILTIN_KIND_MODULES:
        importlib.import_module(module)  # each registers its kinds once, on first import


def model_kind(diffusion: DiffusionConfig) -> str:
    """The registered name that runs ``diffusion.model``: the model's own name when it is a
    registered one, else the kind whose detector accepts what the model is (ModelError if none)."""
    _register_builtin_kinds()
    if diffusion.model in MODEL_KINDS:
        return diffusion.model
    from engine.diffusion.identify import identify_model

    info = identify_model(diffusion.model, local_files_only=diffusion.local_files_only)
    for name, detect in reversed(MODEL_DETECTORS.items()):
        if detect(info):
            return name
    raise ModelError(
        f"model {diffusion.model}: {info.describe()}, which no registered model kind runs "
        f"(kinds: {', '.join(MODEL_DETECTORS)})"
    )


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

"""Measuring tools, not models: the ``null`` and ``null-fixed`` model kinds.

``--model null`` renders at no cost: each frame is a fixed texture of the configured size with
a band of rows tinted by the frame's latent, so the frames are real (right size, content that
follows the latent walk, texture an NDI encoder has to work on) and everything around the model
(music, controls, prompt blend, latent walk, coherence, outputs, feedback) is the real live
path. Prompt embeddings have SD 1.5's shape (77 x 768), so blending them costs what it costs
with SD 1.5.

``--model null-fixed`` is the same with a render that takes ``diffusion.null_render_ms``
(default 3 ms) off the Python thread, as a GPU kernel does: :meth:`NullPipeline.launch` returns
at once and the frames are ready that long after the device is free (frames queue one behind
the other as on one CUDA stream); waiting for them sleeps, holding no lock and not the GIL.
Together they measure the loop's own cost on any machine (``benchmarks/bench_loop.py``).

Both are labelled untrained: they draw no pictures.
"""

from __future__ import annotations

import math
import time
import zlib

import numpy as np
import torch

from engine.config import DiffusionConfig, InferenceConfig
from engine.diffusion.base import (
    BaseDiffusionPipeline,
    Frames,
    PendingRender,
    prompt_texts,
    register_model_kind,
)
from engine.diffusion.conditioning import Conditioning, as_conditioning
from engine.diffusion.device import resolve_device, resolve_dtype
from engine.diffusion.host import HostTransfer, PendingFrames, ReadyFrames
from engine.diffusion.schedule import StepSchedule
from engine.errors import RenderError

NULL_MODEL = "null"
NULL_FIXED_MODEL = "null-fixed"
NULL_LABEL = "null (measuring tool: no model, a texture tinted by the latent)"

# SD 1.5's text encoder output: prompt blends cost what they cost with the real model
NULL_SEQ = 77
NULL_HIDDEN = 768


class NullPipeline(BaseDiffusionPipeline[torch.Tensor]):
    """A pipeline whose render costs nothing (``render_ms`` 0) or a fixed time off-thread."""

    def __init__(
        self,
        diffusion_config: DiffusionConfig,
        inference_config: InferenceConfig,
        *,
        render_ms: float = 0.0,
    ) -> None:
        if render_ms < 0:
            raise RenderError(f"null model: render time must be >= 0 ms, got {render_ms}")
        self.diffusion_config = diffusion_config
        self.inference_config = inference_config
        self.device = resolve_device(diffusion_config.device)
        self.dtype = resolve_dtype(diffusion_config.dtype, self.device)
        self.is_untrained = True
        self.render_ms = float(render_ms)
        kind = f"{NULL_FIXED_MODEL}, {render_ms:g} ms a frame" if render_ms else NULL_MODEL
        self.model_label = f"{NULL_LABEL} [{kind}]"
        self.frames_launched = 0
        self._host = HostTransfer(self.device)
        self._textures: dict[tuple[int, int], torch.Tensor] = {}
        self._schedules: dict[tuple[int, float], StepSchedule] = {}
        self._device_free_at = 0.0  # when the simulated device finishes its queued frames

    def load_model(self) -> None:
        """Nothing to load."""

    def encode_prompt(self, prompt: str | list[str]) -> torch.Tensor:
        rows = []
        for text in prompt_texts(prompt):
            generator = torch.Generator().manual_seed(zlib.crc32(text.encode()))
            rows.append(torch.randn(1, NULL_SEQ, NULL_HIDDEN, generator=generator))
        return torch.cat(rows).to(self.device, self.dtype)

    def get_latent_shape(self) -> tuple[int, int, int, int]:
        inference = self.inference_config
        return (1, 4, inference.height // 8, inference.width // 8)

    def supports_pooled_embeds(self) -> bool:
        return False

    def step_schedule(self, strength: float = 1.0) -> StepSchedule:
        """Evenly spaced noise levels; the "unet" predicts the clean sample itself."""
        steps = self.inference_config.num_inference_steps
        key = (steps, round(min(max(strength, 1e-3), 1.0), 3))
        schedule = self._schedules.get(key)
        if schedule is None:
            alphas = torch.linspace(1.0 - key[1] * 0.9, 0.99, steps)
            table = torch.stack(
                [
                    torch.linspace(999.0 * key[1], 0.0, steps + 1)[:steps],
                    alphas.sqrt(),
                    (1.0 - alphas).sqrt(),
                    torch.zeros(steps),
                    torch.ones(steps),
                    torch.ones(steps),
                ]
            )
            schedule = StepSchedule(table.to(self.device), "sample", key[1])
            self._schedules[key] = schedule
        return schedule

    def predict_x0(
        self,
        samples: torch.Tensor,
        step_indices: torch.Tensor,
        prompt_embeds: Conditioning,
        schedule: StepSchedule,
    ) -> torch.Tensor:
        return samples.to(self.device, torch.float32)

    def denoise(
        self,
        latents: torch.Tensor,
        prompt_embeds: Conditioning,
        *,
        strength: float = 1.0,
        init_latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        self._check_latents(latents)
        x0 = latents.to(self.device, torch.float32)
        if init_latents is not None and strength < 1.0:
            x0 = strength * x0 + (1.0 - strength) * init_latents.to(self.device, torch.float32)
        return x0

    def launch_decode(self, latents: torch.Tensor) -> PendingFrames:
        """The texture, with the top rows tinted by each latent's mean (finite-checked)."""
        batch = int(latents.shape[0])
        self.frames_launched += batch
        height, width = self.inference_config.height, self.inference_config.width
        shape = (batch, height, width, 4)
        band = max(1, height // 64)
        texture = self._texture(height, width)
        pending: PendingFrames
        if self.device.type == "cpu":
            # straight into a host buffer of the ring: the texture once per buffer (a reused
            # one holds it already), then the tint as whole RGBA words (a few python floats)
            slot = self._host.ring(shape).acquire()
            array = slot.array
            if slot.fresh:
                np.copyto(array, texture.numpy())
            words = array.view("<u4")
            finite = True
            for index, means in enumerate(latents.float().mean(dim=(2, 3)).tolist()):
                if not all(math.isfinite(m) for m in means):
                    finite = False
                    continue
                red, green, blue = (_level(m) for m in means[:3])
                words[index, :band] = red | green << 8 | blue << 16 | 255 << 24
            pending = ReadyFrames(array, finite=finite)
        else:
            means = latents.to(self.device, torch.float32).mean(dim=(2, 3))  # (B, 4)
            tint = ((torch.tanh(means[:, :3]) + 1.0) * 127.5).round_().clamp_(0, 255)
            frames = texture.expand(shape).clone()
            frames[:, :band, :, :3] = tint.to(torch.uint8)[:, None, None, :]
            pending = self._host.launch(frames, reused=False, finite=torch.isfinite(means).all())
        if self.render_ms <= 0:
            return pending
        now = time.perf_counter()
        done_at = max(now, self._device_free_at) + self.render_ms / 1000.0
        self._device_free_at = done_at
        return _Timed(pending, done_at)

    def encode_image(self, images: Frames) -> torch.Tensor:
        array = np.asarray(images)
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.dtype != np.uint8 or array.shape[3] not in (3, 4):
            raise RenderError(
                f"encode_image: images must be uint8 (B, H, W, 3 or 4), "
                f"got {array.dtype} {array.shape}"
            )
        shape = self.get_latent_shape()
        mean = torch.from_numpy(array[..., :3].reshape(len(array), -1, 3).mean(axis=1))
        level = torch.atanh((mean.float() / 127.5 - 1.0).clamp(-0.999, 0.999))
        latents = torch.zeros((len(array), *shape[1:]))
        latents[:, :3] = level[:, :, None, None]
        return latents.to(self.device)

    def launch(
        self,
        latents: torch.Tensor,
        prompt_embeds: Conditioning,
        *,
        strength: float = 1.0,
        init_latents: torch.Tensor | None = None,
    ) -> PendingRender:
        embeds = as_conditioning(prompt_embeds).embeds
        if embeds.ndim != 3 or embeds.shape[2] != NULL_HIDDEN:
            raise RenderError(
                f"prompt_embeds: expected (1 or B, seq, {NULL_HIDDEN}), got {tuple(embeds.shape)}"
            )
        x0 = self.denoise(latents, prompt_embeds, strength=strength, init_latents=init_latents)
        return PendingRender(self.launch_decode(x0), x0)

    def _texture(self, height: int, width: int) -> torch.Tensor:
        texture = self._textures.get((height, width))
        if texture is None:
            rng = np.random.default_rng(self.diffusion_config.seed)
            y, x = np.mgrid[0:height, 0:width]
            image = np.empty((height, width, 4), dtype=np.uint8)
            image[..., 0] = (x * 255 // max(width - 1, 1)).astype(np.uint8)
            image[..., 1] = (y * 255 // max(height - 1, 1)).astype(np.uint8)
            image[..., 2] = rng.integers(0, 256, (height, width), dtype=np.uint8)
            image[..., 3] = 255
            texture = torch.from_numpy(image).to(self.device)
            self._textures[(height, width)] = texture
        return texture


class _Timed(PendingFrames):
    """Frames that are done at ``done_at`` (perf_counter seconds): waiting sleeps until then."""

    def __init__(self, inner: PendingFrames, done_at: float) -> None:
        super().__init__()
        self._inner = inner
        self.done_at = done_at

    def ready(self) -> bool:
        return time.perf_counter() >= self.done_at and self._inner.ready()

    def _collect(self) -> Frames:
        left = self.done_at - time.perf_counter()
        if left > 0:
            time.sleep(left)  # releases the GIL: the render runs "elsewhere"
        return self._inner.wait()


def _level(mean: float) -> int:
    """A latent channel's mean as a colour level 0..255 (what the device path computes)."""
    return min(255, max(0, round((math.tanh(mean) + 1.0) * 127.5)))


def _null(diffusion: DiffusionConfig, inference: InferenceConfig) -> BaseDiffusionPipeline:
    return NullPipeline(diffusion, inference)


def _null_fixed(diffusion: DiffusionConfig, inference: InferenceConfig) -> BaseDiffusionPipeline:
    return NullPipeline(diffusion, inference, render_ms=diffusion.null_render_ms)


register_model_kind(NULL_MODEL, _null)
register_model_kind(NULL_FIXED_MODEL, _null_fixed)

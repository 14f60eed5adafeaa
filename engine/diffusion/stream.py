"""StreamDiffusion-style real-time wrapper around a :class:`BaseDiffusionPipeline`.

One call, one frame, with the optimisations a live show wants:

- prompt-embedding cache: a prompt seen once is never encoded again (LRU of
  ``prompt_cache_size``);
- temporal coherence: the new latent is slerped toward the previous frame's latent by
  ``temporal_blend_ratio * (1 - energy)``, so quiet passages flow and loud ones may jump;
- stochastic similarity filter: a near-identical input is skipped (the previous frame is
  returned) with a probability that rises with the similarity above ``similarity_threshold``
  and falls with the music's energy: never at energy 1, never more than
  ``similarity_max_skip`` frames in a row; the draw comes from ``(seed, frame_index)`` when the
  caller gives the frame's index (so a frame's fate does not depend on where a render began),
  else from a seeded random stream;
- img2img feedback: the previous frame's clean latent is the init image at
  ``feedback_strength`` (or the ``strength`` the music gives per call);
- stream batch for multi-step schedules: a pipeline of latents at different steps advances in
  one batched unet call per frame (frames come out ``steps - 1`` calls late; the first call
  fills the pipeline with the first latent, so it is never empty).

``stream_config`` is read at every call; :meth:`update_settings` swaps in a validated copy, so
live changes apply at the next frame. Prompt embeddings are whatever the model's
``encode_prompt`` gives (a tensor for SD 1.x/2.x, a ``TextConditioning`` with pooled embeddings
for SDXL); the similarity filter compares both parts.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from engine.config import StreamConfig, format_validation_error
from engine.diffusion.base import BaseDiffusionPipeline, PendingRender
from engine.diffusion.conditioning import (
    Conditioning,
    ConditioningT_co,
    as_conditioning,
    conditioning_rows,
    select_rows,
)
from engine.diffusion.host import PendingFrames, PendingImage
from engine.diffusion.schedule import StepSchedule
from engine.errors import ConfigError, RenderError
from engine.latent.generator import slerp

Frame = npt.NDArray[np.uint8]

# similarities this close to 1 count as identical (float rounding of the cosine)
_IDENTICAL = 1.0 - 1e-6


@dataclass
class _StreamBatch:
    """Latents in flight: ``samples[k]`` waits for step ``k + 1``, with its own noise."""

    schedule: StepSchedule
    samples: torch.Tensor
    noises: torch.Tensor


class StreamDiffusionPipeline(Generic[ConditioningT_co]):
    """Frame-at-a-time rendering with caching, coherence, skipping, feedback and stream batch.

    ``encode_prompt`` returns what its base's does (the type parameter, as the base's).

    Counters: ``frames_generated``, ``frames_skipped``, ``prompt_cache_hits``,
    ``prompt_cache_misses`` (``encode_count``: how many times the model encoded a prompt);
    ``last_skipped`` says whether the latest call returned the previous frame.
    """

    def __init__(
        self,
        base: BaseDiffusionPipeline[ConditioningT_co],
        stream_config: StreamConfig,
        *,
        seed: int = 0,
    ) -> None:
        self.base = base
        self.stream_config = stream_config
        self._seed = seed
        self._prompts: OrderedDict[str, ConditioningT_co] = OrderedDict()
        self.prompt_cache_hits = 0
        self.prompt_cache_misses = 0
        self.frames_generated = 0
        self.frames_skipped = 0
        self.last_skipped = False
        self.reset()

    @property
    def encode_count(self) -> int:
        """How many prompts the model has encoded (each cache miss encodes once)."""
        return self.prompt_cache_misses

    def reset(self) -> None:
        """Forget the previous frame, its latents and the stream batch; re-seed the filter."""
        self._prev_latent: torch.Tensor | None = None
        self._prev_clean: torch.Tensor | None = None
        self._prev_frame: PendingImage | None = None
        self._reference: tuple[torch.Tensor, Conditioning] | None = None
        self._stream: _StreamBatch | None = None
        self._skips_in_row = 0
        self._rng = random.Random(self._seed)
        self.last_skipped = False

    def update_settings(self, **fields: Any) -> None:
        """Change stream settings; validated as a whole, ConfigError naming the field.

        Call it between frames, from the render thread (the prompt cache is not locked); the
        next frame uses the new settings.
        """
        data = self.stream_config.model_dump()
        data.update(fields)
        try:
            self.stream_config = StreamConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"stream settings: {format_validation_error(exc)}") from None
        self._trim_prompts()

    def encode_prompt(self, prompt: str) -> ConditioningT_co:
        """The prompt's embeddings ``(1, seq, hidden)`` (with pooled ones for SDXL), encoded at
        most once while cached."""
        cached = self._prompts.get(prompt)
        if cached is not None:
            self.prompt_cache_hits += 1
            self._prompts.move_to_end(prompt)
            return cached
        self.prompt_cache_misses += 1
        embeds = self.base.encode_prompt(prompt)
        self._prompts[prompt] = embeds
        self._trim_prompts()
        return embeds

    def get_latent_shape(self) -> tuple[int, int, int, int]:
        return self.base.get_latent_shape()

    def generate_frame_with_coherence(
        self,
        latent: torch.Tensor,
        prompt_embeds: Conditioning,
        music_energy: float,
        *,
        strength: float | None = None,
        frame_index: int | None = None,
    ) -> Frame:
        """One frame ``(H, W, 4)`` RGBA ``uint8`` from a noise ``latent (1, 4, h, w)``.

        ``music_energy`` (0 to 1) loosens coherence and the similarity filter; ``strength``
        overrides ``feedback_strength`` in img2img feedback mode; ``frame_index`` seeds the
        similarity filter's draw for this frame. A skipped frame is the previous frame's array
        itself.
        """
        return self.launch_frame_with_coherence(
            latent, prompt_embeds, music_energy, strength=strength, frame_index=frame_index
        ).wait()

    def launch_frame_with_coherence(
        self,
        latent: torch.Tensor,
        prompt_embeds: Conditioning,
        music_energy: float,
        *,
        strength: float | None = None,
        frame_index: int | None = None,
    ) -> PendingImage:
        """:meth:`generate_frame_with_coherence` without waiting for the frame to reach the
        host: on CUDA the next frame can be planned and launched while this one renders.

        Everything the next frame needs (the blended latent, the clean latent fed back, the
        similarity reference) is known at launch, as device tensors in stream order.
        """
        cfg = self.stream_config
        energy = _energy(music_energy)
        latent = self._cohere(cfg, latent, energy)
        if self._skip(cfg, latent, prompt_embeds, energy, frame_index):
            self.frames_skipped += 1
            self._skips_in_row += 1
            self.last_skipped = True
            assert self._prev_frame is not None  # _skip needs a previous frame
            return self._prev_frame
        pending = self._launch(cfg, latent, prompt_embeds, strength)
        return PendingImage(self._remember(pending, latent, prompt_embeds))

    def generate_frames_with_coherence(
        self,
        latents: torch.Tensor,
        prompt_embeds: Conditioning,
        music_energies: list[float],
        strengths: list[float] | None = None,
        frame_indices: Sequence[int] | None = None,
    ) -> list[Frame]:
        """Several consecutive frames at once (offline renders), same maths as frame by frame.

        Temporal coherence only needs the previous *input* latent, so it is applied in order
        and the model then runs once on the whole batch. Modes that need the previous *output*
        (img2img feedback, the similarity filter, the multi-step stream batch) fall back to
        one frame per call, each at its own ``strengths[i]`` and ``frame_indices[i]`` when given.
        """
        count = latents.shape[0]
        rows = conditioning_rows(prompt_embeds)
        if (
            rows != count
            or len(music_energies) != count
            or (strengths is not None and len(strengths) != count)
            or (frame_indices is not None and len(frame_indices) != count)
        ):
            raise RenderError(
                f"batch of {count} latents needs as many prompt embeddings, energies, "
                f"strengths and frame indices, got {rows}, "
                f"{len(music_energies)}, {'none' if strengths is None else len(strengths)} and "
                f"{'none' if frame_indices is None else len(frame_indices)}"
            )
        cfg = self.stream_config
        sequential = (
            cfg.img2img_feedback
            or cfg.enable_similarity_filter
            or (cfg.use_stream_batch and self.base.step_schedule(1.0).steps > 1)
        )
        if sequential or count == 1:
            return [
                self.generate_frame_with_coherence(
                    latents[i : i + 1],
                    select_rows(prompt_embeds, slice(i, i + 1)),
                    energy,
                    strength=None if strengths is None else strengths[i],
                    frame_index=None if frame_indices is None else frame_indices[i],
                )
                for i, energy in enumerate(music_energies)
            ]
        blended = torch.cat(
            [
                self._cohere(cfg, latents[i : i + 1], _energy(music_energy))
                for i, music_energy in enumerate(music_energies)
            ]
        )
        pending = PendingRender.done(self.base.render(blended, prompt_embeds))
        frames = self._remember(pending, blended, prompt_embeds)
        return [frames.image(i) for i in range(count)]

    def _cohere(self, cfg: StreamConfig, latent: torch.Tensor, energy: float) -> torch.Tensor:
        """Blend a new input latent toward the previous one (louder music blends less)."""
        latent = self._check_latent(latent)
        if self._prev_latent is not None and self._prev_latent.shape != latent.shape:
            self.reset()  # the frame size changed: nothing to blend with or feed back
        if cfg.enable_temporal_coherence and self._prev_latent is not None:
            ratio = cfg.temporal_blend_ratio * (1.0 - energy)
            if ratio > 0.0:
                latent = slerp(latent, self._prev_latent, ratio)
        self._prev_latent = latent
        return latent

    def _remember(
        self, pending: PendingRender, latents: torch.Tensor, embeds: Conditioning
    ) -> PendingFrames:
        """Keep the last launched frame for skipping and feedback; the launch's frames."""
        # the very array the launch hands out, so a skip returns it again
        self._prev_frame = PendingImage(pending.frames)
        self._prev_clean = pending.latents[-1:]
        self._reference = (latents[-1:], select_rows(embeds, slice(-1, None)))
        self._skips_in_row = 0
        self.last_skipped = False
        self.frames_generated += int(pending.latents.shape[0])
        return pending.frames

    # the render paths

    def _launch(
        self, cfg: StreamConfig, latent: torch.Tensor, embeds: Conditioning, strength: float | None
    ) -> PendingRender:
        if cfg.img2img_feedback and self._prev_clean is not None:
            level = cfg.feedback_strength if strength is None else strength
            if not 0.0 <= level <= 1.0:
                raise RenderError(f"strength: {level} is outside [0, 1]")
            return self.base.launch(latent, embeds, strength=level, init_latents=self._prev_clean)
        schedule = self.base.step_schedule(1.0)
        if cfg.use_stream_batch and schedule.steps > 1 and not cfg.img2img_feedback:
            return self._stream_step(latent, embeds, schedule)
        return self.base.launch(latent, embeds)

    def _stream_step(
        self, latent: torch.Tensor, embeds: Conditioning, schedule: StepSchedule
    ) -> PendingRender:
        stream = self._stream
        if (
            stream is None
            or stream.schedule is not schedule
            or stream.samples.shape[1:] != latent.shape[1:]
        ):
            stream = self._fill_stream(latent, embeds, schedule)
        steps = schedule.steps
        noises = torch.cat([latent, stream.noises])
        samples = torch.cat([schedule.start(latent), stream.samples])
        indices = torch.arange(steps, device=latent.device)
        x0 = self.base.predict_x0(samples, indices, embeds, schedule)
        # every latent but the finished one moves on to its next step
        stream.samples = schedule.renoise(x0[:-1], noises[:-1], indices[1:])
        stream.noises = noises[:-1]
        self._stream = stream
        clean = x0[-1:]
        return PendingRender(self.base.launch_decode(clean), clean)

    def _fill_stream(
        self, latent: torch.Tensor, embeds: Conditioning, schedule: StepSchedule
    ) -> _StreamBatch:
        """In-flight latents as if ``latent`` had been fed for the last ``steps - 1`` frames."""
        samples = []
        sample = schedule.start(latent)
        for step in range(schedule.steps - 1):
            index = torch.full((1,), step, device=latent.device)
            x0 = self.base.predict_x0(sample, index, embeds, schedule)
            sample = schedule.renoise(x0, latent, index + 1)
            samples.append(sample)
        # the oldest latent (furthest along) sits last, next to the finished one
        ordered = torch.cat(samples)
        noises = latent.expand(schedule.steps - 1, -1, -1, -1)
        return _StreamBatch(schedule, ordered, noises)

    # the similarity filter

    def _skip(
        self,
        cfg: StreamConfig,
        latent: torch.Tensor,
        embeds: Conditioning,
        energy: float,
        frame_index: int | None,
    ) -> bool:
        if not cfg.enable_similarity_filter or self._prev_frame is None or self._reference is None:
            return False
        if self._skips_in_row >= cfg.similarity_max_skip:
            return False
        ref_latent, ref_embeds = self._reference
        similarity = min(_cosine(latent, ref_latent), _conditioning_cosine(embeds, ref_embeds))
        threshold = cfg.similarity_threshold
        if similarity < threshold:
            return False
        if similarity >= _IDENTICAL or threshold >= 1.0:
            chance = 1.0
        else:
            chance = min(1.0, (similarity - threshold) / (1.0 - threshold))
        chance *= 1.0 - energy
        return self._draw(frame_index) < chance

    def _draw(self, frame_index: int | None) -> float:
        # a frame's own draw: the same wherever the render began (a chunk of a split song)
        if frame_index is not None:
            return random.Random(f"similarity:{self._seed}:{frame_index}").random()
        return self._rng.random()

    # checks

    def _check_latent(self, latent: torch.Tensor) -> torch.Tensor:
        shape = self.base.get_latent_shape()
        if tuple(latent.shape) != shape:
            raise RenderError(f"latent: expected {shape}, got {tuple(latent.shape)}")
        return latent.to(self.base.device, torch.float32)

    def _trim_prompts(self) -> None:
        while len(self._prompts) > self.stream_config.prompt_cache_size:
            self._prompts.popitem(last=False)


def _energy(value: float) -> float:
    energy = float(value)
    if not math.isfinite(energy):
        raise RenderError(f"music_energy: {value!r} is not a finite number")
    return min(max(energy, 0.0), 1.0)


def _conditioning_cosine(a: Conditioning, b: Conditioning) -> float:
    """The lower of the token and pooled embeddings' similarities (pooled: SDXL only)."""
    if a is b:
        return 1.0
    first, second = as_conditioning(a), as_conditioning(b)
    similarity = _cosine(first.embeds, second.embeds)
    if first.pooled is not None and second.pooled is not None:
        similarity = min(similarity, _cosine(first.pooled, second.pooled))
    elif (first.pooled is None) != (second.pooled is None):
        return 0.0
    return similarity


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    if a is b:
        return 1.0
    if a.shape != b.shape:
        return 0.0
    a_flat = a.reshape(-1).float()
    b_flat = b.to(a.device).reshape(-1).float()
    return float(F.cosine_similarity(a_flat, b_flat, dim=0))

"""The conductor: music features + live controls -> frame requests -> frames.

One code path serves offline renders and live shows: both hand the conductor a
:class:`~engine.audio.types.MusicState` per video frame (offline ones come from
``AudioFeatures.state_at_frame``, live ones from the streaming analyzer). The conductor reads the
controls once per frame, so a change lands between frames and never inside one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engine.audio.types import AudioFeatures, MusicState
from engine.config import PipelineConfig, preset_values
from engine.controls import ControlStore
from engine.diffusion.base import create_pipeline
from engine.diffusion.stream import StreamDiffusionPipeline
from engine.errors import RenderError
from engine.frame import Frame
from engine.latent.generator import LatentGenerator
from engine.profiling.profiler import configure_profiler, get_profiler
from engine.prompt.interpolator import PromptInterpolator
from osc_schema.controls import LiveControls

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FrameRequest:
    """Everything needed to render one frame, decided before any model runs."""

    index: int
    time: float
    music: MusicState
    controls: LiveControls
    latent: torch.Tensor
    prompt_embeds: torch.Tensor
    energy: float
    strength: float


def controls_from_config(config: PipelineConfig, preset: str | None = None) -> LiveControls:
    """Initial live controls taken from a configuration (prompts, stream settings, seed)."""
    data = {
        "prompt": config.prompt.base_prompt,
        "negative_prompt": config.prompt.negative_prompt,
        "chroma_prompts": config.prompt.chroma_prompts,
        "chroma_weight": config.prompt.chroma_weight,
        "blend": config.stream.temporal_blend_ratio,
        "similarity": config.stream.similarity_threshold,
        "coherence": config.stream.enable_temporal_coherence,
        "strength": config.stream.feedback_strength,
        "seed": config.latent.seed,
    }
    if preset is not None:
        data["preset"] = preset
    return LiveControls.model_validate(data)


class Conductor:
    """Turns music states and controls into frames through a streaming pipeline."""

    def __init__(
        self,
        stream: StreamDiffusionPipeline,
        config: PipelineConfig,
        controls: ControlStore | None = None,
    ) -> None:
        self.stream = stream
        self.config = config
        self.controls = controls or ControlStore(controls_from_config(config))
        base = stream.base
        self._latents = LatentGenerator(config.latent, base.device, base.dtype)
        self._prompts = PromptInterpolator(config.prompt, base.device, base.dtype)
        self._latent_shape = stream.get_latent_shape()
        self._applied_version = -1
        self._preset: str = self.controls.values.preset
        self._chroma_key: tuple[str, ...] = ()
        self._chroma_embeds: torch.Tensor | None = None
        self._last_frame: Frame | None = None
        self.frames_rendered = 0
        self.frames_held = 0

    @classmethod
    def from_config(cls, config: PipelineConfig, controls: ControlStore | None = None) -> Conductor:
        """Load the configured model and wrap it for streaming; the profiler follows the config."""
        base = create_pipeline(config.diffusion, config.inference)
        if base.is_untrained:
            log.warning("model: %s: frames are abstract patterns, not pictures", base.model_label)
        else:
            log.info("model: %s on %s (%s)", base.model_label, base.device, base.dtype)
        configure_profiler(config.profiling, base.device)
        return cls(StreamDiffusionPipeline(base, config.stream), config, controls)

    @property
    def last_frame(self) -> Frame | None:
        """The most recent frame (rendered or held)."""
        return self._last_frame

    def reset(self) -> None:
        """Forget the previous frame and all temporal state (a new song, a new render)."""
        self.stream.reset()
        self._prompts.reset()
        self._last_frame = None

    def plan(self, music: MusicState, index: int | None = None) -> FrameRequest:
        """Decide latent, prompt embeddings, energy and strength for one frame."""
        profiler = get_profiler()
        snapshot = self.controls.snapshot()
        values = snapshot.values
        if snapshot.version != self._applied_version:
            self._apply_stream_settings(values)
            self._applied_version = snapshot.version
        energy = float(np.clip(music.energy * values.reactivity, 0.0, 1.0))
        with profiler.profile("prompt"):
            base_embeds = self.stream.encode_prompt(values.prompt)
            chroma_embeds = self._chroma(values.chroma_prompts)
            embeds = self._prompts.blend_for_state(
                music, base_embeds, chroma_embeds, chroma_weight=values.chroma_weight
            )
        with profiler.profile("latent"):
            latent = self._latents.latent_for_state(
                music, self._latent_shape, seed=values.seed, reactivity=values.reactivity
            )
        # louder music pushes the img2img feedback further from the previous frame
        strength = float(np.clip(values.strength * (0.5 + 0.5 * energy), 0.0, 1.0))
        return FrameRequest(
            index=music.frame if index is None else index,
            time=music.time,
            music=music,
            controls=values,
            latent=latent,
            prompt_embeds=embeds,
            energy=energy,
            strength=strength,
        )

    def render(self, music: MusicState, index: int | None = None) -> Frame:
        """Render the frame for one music state (the live path and the offline path alike)."""
        request = self.plan(music, index)
        return self.execute(request)

    def execute(self, request: FrameRequest) -> Frame:
        """Run the model for a planned frame; a paused engine re-shows the last frame."""
        if request.controls.pause and self._last_frame is not None:
            self.frames_held += 1
            frame = Frame(self._last_frame.image, request.index, request.time)
        else:
            with get_profiler().profile("generate"):
                image = self.stream.generate_frame_with_coherence(
                    request.latent,
                    request.prompt_embeds,
                    request.energy,
                    strength=request.strength,
                    frame_index=request.index,
                )
            self.frames_rendered += 1
            frame = Frame(np.ascontiguousarray(image), request.index, request.time)
        self._last_frame = frame
        return frame

    def execute_batch(self, requests: Sequence[FrameRequest]) -> list[Frame]:
        """Run the model once for several consecutive planned frames (offline renders)."""
        if len(requests) == 1 or any(r.controls.pause for r in requests):
            return [self.execute(r) for r in requests]
        with get_profiler().profile("generate"):
            images = self.stream.generate_frames_with_coherence(
                torch.cat([r.latent for r in requests]),
                torch.cat([r.prompt_embeds for r in requests]),
                [r.energy for r in requests],
                [r.strength for r in requests],
                [r.index for r in requests],
            )
        self.frames_rendered += len(requests)
        frames = [Frame(image, r.index, r.time) for image, r in zip(images, requests, strict=True)]
        self._last_frame = frames[-1]
        return frames

    def render_features(
        self,
        features: AudioFeatures,
        *,
        frames: Sequence[int] | None = None,
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[Frame]:
        """Render a whole song (or the given frame indices) in order, from a clean state.

        Frames are planned one by one (the same path as live) and rendered ``batch_size`` at a
        time (default ``inference.batch_size``); the same seed gives the same frames.
        """
        self.reset()
        indices = list(range(features.num_frames) if frames is None else frames)
        yield from self._render_indices(features, indices, batch_size, progress)

    def render_span(
        self,
        features: AudioFeatures,
        start: int,
        stop: int,
        *,
        warmup_from: int | None = None,
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[Frame]:
        """Frames ``start`` to ``stop - 1`` of a song, as near the whole-song render as can be.

        Rendering begins at ``warmup_from`` (default ``start``) from a clean state, and the
        frames before ``start`` are dropped: temporal coherence, feedback, the stream batch and
        the similarity filter run into ``start`` as in one go, the more closely the longer the
        warm-up. The chroma smoothing depends on the music alone: it is brought up to
        ``warmup_from`` exactly. Batches start at ``warmup_from``; at a multiple of the batch
        size they group frames as the whole-song render does.
        """
        first = start if warmup_from is None else warmup_from
        if not 0 <= first <= start <= stop <= features.num_frames:
            raise RenderError(
                f"render span: need 0 <= warmup_from ({first}) <= start ({start}) <= stop "
                f"({stop}) <= {features.num_frames} frames"
            )
        self.reset()
        for i in range(first):
            self._prompts.weights_for_state(features.state_at_frame(i))
        yield from self._render_indices(
            features, range(first, stop), batch_size, progress, keep_from=start
        )

    def _render_indices(
        self,
        features: AudioFeatures,
        indices: Sequence[int],
        batch_size: int | None,
        progress: Callable[[int], None] | None,
        *,
        keep_from: int = 0,
    ) -> Iterator[Frame]:
        size = max(1, batch_size or self.config.inference.batch_size)
        for start in range(0, len(indices), size):
            chunk = indices[start : start + size]
            requests = [self.plan(features.state_at_frame(i), i) for i in chunk]
            kept = [f for f in self.execute_batch(requests) if f.index >= keep_from]
            yield from kept
            if progress is not None and kept:
                progress(len(kept))

    def _apply_stream_settings(self, values: LiveControls) -> None:
        if values.preset != self._preset:
            self._apply_preset(values.preset)
        self.stream.update_settings(
            temporal_blend_ratio=values.blend,
            enable_temporal_coherence=values.coherence,
            similarity_threshold=values.similarity,
            feedback_strength=values.strength,
        )

    def _apply_preset(self, name: str) -> None:
        """Steps and the similarity filter follow the preset live; the VAE stays as loaded."""
        defined = preset_values(name)
        steps = defined["inference"]["num_inference_steps"]
        base = self.stream.base
        # a copy: the configuration the caller passed in stays as it was
        base.inference_config = base.inference_config.model_copy(
            update={"num_inference_steps": steps}
        )
        self.stream.update_settings(
            enable_similarity_filter=defined["stream"]["enable_similarity_filter"]
        )
        self._preset = name

    def _chroma(self, prompts: tuple[str, ...]) -> torch.Tensor:
        if self._chroma_embeds is None or prompts != self._chroma_key:
            self._chroma_embeds = torch.cat([self.stream.encode_prompt(p) for p in prompts])
            self._chroma_key = prompts
        return self._chroma_embeds

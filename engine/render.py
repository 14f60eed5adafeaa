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
from engine.diffusion.conditioning import Conditioning, concat
from engine.diffusion.device import release_cached_memory
from engine.diffusion.host import PendingImage, ReadyFrames
from engine.diffusion.stream import StreamDiffusionPipeline
from engine.errors import RenderError
from engine.frame import Frame, RGBAImage
from engine.latent.generator import LatentGenerator
from engine.profiling.profiler import configure_profiler, get_profiler
from engine.prompt.interpolator import PromptInterpolator
from osc_schema.controls import LiveControls

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FrameRequest:
    """Everything needed to render one frame, decided before any model runs.

    ``prompt_embeds`` is the blended conditioning in the model's form: a tensor for SD 1.x/2.x,
    a ``TextConditioning`` (token and pooled embeddings) for SDXL, whose size inputs (time ids)
    the pipeline derives from the frame size.
    """

    index: int
    time: float
    music: MusicState
    controls: LiveControls
    latent: torch.Tensor
    prompt_embeds: Conditioning
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
        self._chroma_embeds: Conditioning | None = None
        self._last_frame: Frame | None = None
        self._last_image: PendingImage | None = None  # the last launched (or held) picture
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
        self._last_image = None

    def plan(self, music: MusicState, index: int | None = None) -> FrameRequest:
        """Decide latent, prompt embeddings, energy and strength for one frame."""
        profiler = get_profiler()
        snapshot = self.controls.snapshot()
        values = snapshot.values
        if snapshot.version != self._applied_version:
            self._apply_stream_settings(values)
            self._applied_version = snapshot.version
        energy = min(max(float(music.energy) * values.reactivity, 0.0), 1.0)
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
        strength = min(max(values.strength * (0.5 + 0.5 * energy), 0.0), 1.0)
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
        return self.launch(request).wait()

    def launch(self, request: FrameRequest) -> PendingFrame:
        """Start the model on a planned frame and return before its pixels reach the host
        where the device allows (CUDA, ``null-fixed``): the next frame can be planned
        meanwhile. Launches are waited on in order; a paused engine re-shows the last frame."""
        held = self._last_image
        if request.controls.pause and held is not None:
            self.frames_held += 1
            return PendingFrame(self, held, request)
        with get_profiler().profile("generate"):
            image = self.stream.launch_frame_with_coherence(
                request.latent,
                request.prompt_embeds,
                request.energy,
                strength=request.strength,
                frame_index=request.index,
            )
        self.frames_rendered += 1
        self._last_image = image
        return PendingFrame(self, image, request)

    def step_down(self) -> str | None:
        """Ask less of the device after it ran out of memory: free its cache, then turn the
        stream batch off or, once it is off, halve the render size (frames are still handed
        out at the configured size, scaled up). Says what changed; None when nothing is left."""
        stream, base = self.stream, self.stream.base
        release_cached_memory(base.device)
        if stream.stream_config.use_stream_batch and base.step_schedule(1.0).steps > 1:
            stream.update_settings(use_stream_batch=False)
            stream.reset()
            return "stream batch off"
        inference = base.inference_config
        height, width = inference.height // 2, inference.width // 2
        if min(height, width) < 64 or height % 8 or width % 8:
            return None
        base.inference_config = inference.model_copy(update={"height": height, "width": width})
        self._latent_shape = stream.get_latent_shape()
        stream.reset()
        self._last_image = None if self._last_frame is None else _ready(self._last_frame)
        return f"render size {width}x{height}"

    def execute_batch(self, requests: Sequence[FrameRequest]) -> list[Frame]:
        """Run the model once for several consecutive planned frames (offline renders)."""
        if len(requests) == 1 or any(r.controls.pause for r in requests):
            return [self.execute(r) for r in requests]
        with get_profiler().profile("generate"):
            images = self.stream.generate_frames_with_coherence(
                torch.cat([r.latent for r in requests]),
                concat([r.prompt_embeds for r in requests]),
                [r.energy for r in requests],
                [r.strength for r in requests],
                [r.index for r in requests],
            )
        self.frames_rendered += len(requests)
        frames = [self._sized(image, r) for image, r in zip(images, requests, strict=True)]
        self._last_frame = frames[-1]
        self._last_image = _ready(frames[-1])
        return frames

    def render_features(
        self,
        features: AudioFeatures,
        *,
        frames: Sequence[int] | None = None,
        batch_size: int | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> Iterator[Frame]:
        """Render a whole song (or the given frame indices) in order, from a clean state.

        Frames are planned one by one (the same path as live) and rendered ``batch_size`` at a
        time (default ``inference.batch_size``); the same seed gives the same frames.
        ``progress`` hears how many frames each batch added (a progress bar's ``update``).
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
        progress: Callable[[int], object] | None = None,
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
        progress: Callable[[int], object] | None,
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

    def _sized(self, image: RGBAImage, request: FrameRequest) -> Frame:
        """The frame at the configured size (scaled up by a whole factor after a step-down)."""
        inference = self.config.inference
        height, width = image.shape[:2]
        if (height, width) != (inference.height, inference.width):
            factor = inference.height // height
            scaled = np.empty((inference.height, inference.width, 4), dtype=np.uint8)
            scaled.reshape(height, factor, width, factor, 4)[...] = image[:, None, :, None, :]
            image = scaled
        return Frame(np.ascontiguousarray(image), request.index, request.time)

    def _failed(self, pending: PendingFrame) -> None:
        """A launched frame turned out bad: never show it again (pause holds the last good)."""
        if self._last_image is pending.image:
            self._last_image = None if self._last_frame is None else _ready(self._last_frame)

    def _apply_stream_settings(self, values: LiveControls) -> None:
        if values.preset != self._preset:
            self._apply_preset(values.preset)
        # the unconditional input of guidance; the model re-encodes it only when it changed
        self.stream.base.set_negative_prompt(values.negative_prompt)
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

    def _chroma(self, prompts: tuple[str, ...]) -> Conditioning:
        if self._chroma_embeds is None or prompts != self._chroma_key:
            self._chroma_embeds = concat([self.stream.encode_prompt(p) for p in prompts])
            self._chroma_key = prompts
        return self._chroma_embeds


class PendingFrame:
    """A launched frame: :meth:`wait` gives the :class:`Frame` once its pixels are in host
    memory (a frame whose model output held NaN or inf raises NonFiniteFrameError instead)."""

    def __init__(self, conductor: Conductor, image: PendingImage, request: FrameRequest) -> None:
        self.image = image
        self.request = request
        self._conductor = conductor
        self._frame: Frame | None = None

    def ready(self) -> bool:
        """Whether :meth:`wait` would return at once."""
        return self._frame is not None or self.image.ready()

    def wait(self) -> Frame:
        if self._frame is None:
            try:
                pixels = self.image.wait()
            except BaseException:
                self._conductor._failed(self)
                raise
            self._frame = self._conductor._sized(pixels, self.request)
            self._conductor._last_frame = self._frame
        return self._frame


def _ready(frame: Frame) -> PendingImage:
    return PendingImage(ReadyFrames(frame.image[None]))

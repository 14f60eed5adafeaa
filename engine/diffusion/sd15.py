"""Stable Diffusion 1.x / 2.x (and the tiny models) on diffusers, driven without ``__call__``.

:class:`SD15Pipeline` is the ``sd`` model kind (``SDPipeline`` names it too): 768- or 1024-wide
cross attention, epsilon or v-prediction as the scheduler's config says. The SDXL kind
(:mod:`engine.diffusion.sdxl`) is the same driver with two text encoders, pooled embeddings and
time ids; the hooks it overrides are marked below.

Loading follows ``diffusion.model`` (:mod:`engine.diffusion.loading`), fuses an accelerator
LoRA, picks the few-step scheduler, swaps in TAESD and moves everything to the device in its
dtype. Per frame, the hot path calls the unet and the decoder directly with timesteps and noise
levels computed once (:mod:`engine.diffusion.schedule`), converts to RGBA ``uint8`` on the
device and makes one host copy: half of a plain ``StableDiffusionPipeline.__call__`` on small
models is overhead this skips. On CUDA the whole step can be captured as a CUDA graph
(``diffusion.cuda_graphs``) and copied out through a pinned buffer; elsewhere those settings
log and fall back to the eager step. On the CPU the unet's calls replay a trace per input
signature (:mod:`engine.diffusion.traced`): same results, less Python per frame.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from engine.config import DiffusionConfig, InferenceConfig
from engine.diffusion.base import BaseDiffusionPipeline, Frames, PendingRender, prompt_texts
from engine.diffusion.conditioning import (
    Conditioning,
    ConditioningT_co,
    TextConditioning,
    as_conditioning,
)
from engine.diffusion.cuda_graphs import GraphRunner, cuda_graphs_usable
from engine.diffusion.device import resolve_device, resolve_dtype
from engine.diffusion.host import HostTransfer, PendingFrames
from engine.diffusion.loading import (
    check_sd_architecture,
    check_sdxl_architecture,
    fuse_lora,
    load_sd_pipeline,
    load_tiny_vae,
    resolve_model_source,
)
from engine.diffusion.schedule import (
    PredictionType,
    StepSchedule,
    auto_scheduler_kind,
    build_step_schedule,
    make_scheduler,
)
from engine.diffusion.tiny import is_tiny_model, tiny_label
from engine.diffusion.traced import TracedCalls
from engine.errors import ModelError, RenderError

log = logging.getLogger(__name__)

# schedules kept per (steps, strength); music-driven strengths are rounded to this many digits
_SCHEDULE_CACHE = 64
_STRENGTH_DIGITS = 3

FrameStep = Any  # the per-frame tensor function, eager or compiled
# its arguments (all tensors, so a CUDA graph can hold them): latents, schedule table, init
# latents, then the unet conditioning of UnetInputs.tensors()
StepArgs = tuple[torch.Tensor | None, ...]
DEFAULT_TAESD = "madebyollin/taesd"


@dataclass(frozen=True, eq=False)
class UnetInputs:
    """The unet's conditioning for one call: the prompt's embeddings (and pooled ones, SDXL),
    the negative prompt's when guidance is on, the guidance scale and SDXL's time ids."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    uncond: torch.Tensor | None = None
    uncond_pooled: torch.Tensor | None = None
    guidance: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def tensors(self) -> tuple[torch.Tensor | None, ...]:
        return (
            self.embeds,
            self.pooled,
            self.uncond,
            self.uncond_pooled,
            self.guidance,
            self.time_ids,
        )


class LatentDiffusionPipeline(BaseDiffusionPipeline[ConditioningT_co]):
    """A diffusers latent diffusion model (SD 1.x/2.x or SDXL layout) as a frame renderer: the
    driver both kinds share (:class:`SD15Pipeline`, :class:`~engine.diffusion.sdxl.SDXLPipeline`).

    ``pipe`` is the underlying ``StableDiffusionPipeline`` (same components; loading is lazy,
    on first use or :meth:`load_model`). ``inference_config`` is read at every call: a change
    of steps or guidance applies at the next frame.
    """

    def __init__(
        self,
        diffusion_config: DiffusionConfig,
        inference_config: InferenceConfig,
        *,
        pipe: Any = None,
        label: str | None = None,
    ):
        """``pipe``: an already-built diffusers SD pipeline to drive instead of loading
        ``diffusion.model`` (benchmarks of random-weight architectures, embedding); ``label``
        names it for users."""
        self.diffusion_config = diffusion_config
        self.inference_config = inference_config
        self.device = resolve_device(diffusion_config.device)
        self.dtype = resolve_dtype(diffusion_config.dtype, self.device)
        self.is_untrained = pipe is None and is_tiny_model(diffusion_config.model)
        if label is not None:
            self.model_label = label
        elif pipe is not None:
            self.model_label = f"{type(pipe).__name__} (given)"
        else:
            self.model_label = (
                tiny_label(diffusion_config.model) if self.is_untrained else diffusion_config.model
            )
        self._given = pipe
        self._pipe: Any = None
        self._prediction: PredictionType = "epsilon"
        self._schedules: OrderedDict[tuple[int, float], StepSchedule] = OrderedDict()
        self._uncond: TextConditioning | None = None
        self._uncond_text = ""
        self._vae_dtype = self.dtype
        #: how many times the negative prompt was encoded (once per change, when guided)
        self.negative_encodes = 0
        self._frame_step: FrameStep = self._frame
        self._graphs: GraphRunner | None = None
        self._traced_unet: TracedCalls | None = None
        self._host = HostTransfer(self.device)

    # loading

    @property
    def pipe(self) -> Any:
        """The diffusers ``StableDiffusionPipeline`` (loads the model if needed)."""
        self.load_model()
        return self._pipe

    @property
    def uses_cuda_graphs(self) -> bool:
        """Whether frames go through a captured CUDA graph."""
        return self._graphs is not None

    @property
    def traced_unet_signatures(self) -> int:
        """How many unet input signatures replay a trace (the cpu path, :mod:`.traced`)."""
        return 0 if self._traced_unet is None else self._traced_unet.traced

    def load_model(self) -> None:
        if self._pipe is not None:
            return
        from diffusers import AutoencoderTiny

        cfg, inference = self.diffusion_config, self.inference_config
        if self._given is not None:
            pipe = self._given
            check = check_sdxl_architecture if self.is_xl else check_sd_architecture
            check(pipe, self.model_label)
        else:
            pipe = load_sd_pipeline(
                resolve_model_source(cfg.model),
                dtype=self.dtype,
                local_files_only=cfg.local_files_only,
                seed=cfg.seed,
                height=inference.height,
                width=inference.width,
                xl=self.is_xl,
            )
        if cfg.lora:
            fuse_lora(pipe, cfg.lora, cfg.lora_scale, local_files_only=cfg.local_files_only)
        pipe.scheduler = make_scheduler(
            pipe.scheduler, auto_scheduler_kind(cfg.scheduler, cfg.model, cfg.lora)
        )
        if cfg.use_tiny_vae and not isinstance(pipe.vae, AutoencoderTiny):
            pipe.vae = load_tiny_vae(
                self._taesd_spec(), dtype=self.dtype, local_files_only=cfg.local_files_only
            )
        # a full vae that overflows in half precision (SDXL's) decodes in float32
        upcast = self.dtype == torch.float16 and bool(
            getattr(pipe.vae.config, "force_upcast", False)
        )
        self._vae_dtype = torch.float32 if upcast else self.dtype
        modules = [(pipe.unet, self.dtype), (pipe.vae, self._vae_dtype)]
        modules += [(encoder, self.dtype) for encoder in text_encoders(pipe)]
        try:
            pipe.to(self.device)
            for module, dtype in modules:
                # cast only what differs: loaders already honour torch_dtype, and diffusers
                # warns on every dtype cast
                if module.dtype != dtype:
                    module.to(dtype=dtype)
        except (RuntimeError, TypeError) as exc:
            raise ModelError(
                f"model {self.model_label}: cannot move to {self.device} as {self.dtype} ({exc})"
            ) from exc
        for module, _ in modules:
            module.eval().requires_grad_(False)
        if cfg.channels_last:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        pipe.set_progress_bar_config(disable=True)
        self._pipe = pipe
        self._prediction = pipe.scheduler.config.prediction_type
        self._setup_fast_path()
        log.info(
            "loaded %s on %s (%s), scheduler %s",
            self.model_label,
            self.device,
            self.dtype,
            type(pipe.scheduler).__name__,
        )

    # the sdxl kind sets this; it changes what load_model reads and checks
    is_xl = False

    def _taesd_spec(self) -> str:
        """The TAESD to decode with: the configured one (``taesdxl`` for SDXL by default)."""
        spec = self.diffusion_config.tiny_vae
        return "madebyollin/taesdxl" if self.is_xl and spec == DEFAULT_TAESD else spec

    def _setup_fast_path(self) -> None:
        cfg = self.diffusion_config
        if self.device.type == "cpu" and not cfg.compile:
            # on the cpu a small unet is bound by python overhead: replay a trace instead
            self._traced_unet = TracedCalls(UnetCall(self._pipe.unet), name="unet")
        if cfg.compile:
            self._frame_step = torch.compile(self._frame, dynamic=False)
        if cfg.cuda_graphs:
            if cuda_graphs_usable(self.device):
                self._graphs = GraphRunner(self._frame_step, self.device)
            else:
                log.warning(
                    "diffusion.cuda_graphs needs a CUDA device; on %s the frame step runs eagerly",
                    self.device,
                )
        if cfg.compile or self._graphs is not None:
            self._warm_up()

    def _warm_up(self) -> None:
        """Compile and capture now, not on the first live frame; fall back to eager on failure."""
        latents = torch.zeros(self.get_latent_shape(), device=self.device)
        embeds = self.encode_prompt("")
        try:
            self.render(latents, embeds)
        except Exception as exc:  # noqa: BLE001 - any compiler or capture failure: run eagerly
            log.warning("fast path unavailable on %s, running eagerly: %s", self.device, exc)
            self._frame_step = self._frame
            self._graphs = None

    # prompts and shapes

    def get_latent_shape(self) -> tuple[int, int, int, int]:
        """``(1, C, H // f, W // f)``: the unet's latent channels, ``f`` the VAE's scale factor
        (8 for SD and SDXL: 1024x1024 SDXL frames have 128x128 latents)."""
        pipe = self.pipe
        factor = int(pipe.vae_scale_factor)
        inference = self.inference_config
        return (
            1,
            int(pipe.unet.config.in_channels),
            inference.height // factor,
            inference.width // factor,
        )

    def supports_pooled_embeds(self) -> bool:
        return False

    def step_schedule(self, strength: float = 1.0) -> StepSchedule:
        steps = self.inference_config.num_inference_steps
        key = (steps, round(min(max(strength, 10.0**-_STRENGTH_DIGITS), 1.0), _STRENGTH_DIGITS))
        schedule = self._schedules.get(key)
        if schedule is None:
            schedule = build_step_schedule(self.pipe.scheduler, steps, key[1], self.device)
            self._schedules[key] = schedule
            while len(self._schedules) > _SCHEDULE_CACHE:
                self._schedules.popitem(last=False)
        else:
            self._schedules.move_to_end(key)
        return schedule

    # rendering

    def launch(
        self,
        latents: torch.Tensor,
        prompt_embeds: Conditioning,
        *,
        strength: float = 1.0,
        init_latents: torch.Tensor | None = None,
    ) -> PendingRender:
        """Queue the frame step; on CUDA the frames' copy to a pinned slot is in flight when
        this returns (``wait`` waits on its event only)."""
        args = self._step_inputs(latents, prompt_embeds, strength, init_latents)
        with torch.inference_mode():
            if self._graphs is not None:
                try:
                    x0, rgba, finite = self._graphs(*args)
                    pending = self._host.launch(rgba, reused=True, finite=finite)
                    return PendingRender(pending, x0.clone())
                except Exception as exc:  # noqa: BLE001 - capture failures vary by driver
                    log.warning("cuda graph capture failed, running eagerly: %s", exc)
                    self._graphs = None
            x0, rgba, finite = self._frame_step(*args)
            return PendingRender(self._host.launch(rgba, reused=False, finite=finite), x0)

    def denoise(
        self,
        latents: torch.Tensor,
        prompt_embeds: Conditioning,
        *,
        strength: float = 1.0,
        init_latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        latents, init, cond = self._inputs(latents, prompt_embeds, strength, init_latents)
        schedule = self.step_schedule(strength if init is not None else 1.0)
        with torch.inference_mode():
            return self._denoise_steps(latents, schedule, init, cond)

    def launch_decode(self, latents: torch.Tensor) -> PendingFrames:
        self.load_model()
        with torch.inference_mode():
            rgba, finite = self._to_rgba(latents.to(self.device))
        return self._host.launch(rgba, reused=False, finite=finite)

    def encode_image(self, images: Frames) -> torch.Tensor:
        pipe = self.pipe
        array = np.asarray(images)
        if array.ndim == 3:
            array = array[None]
        inference = self.inference_config
        expected = (inference.height, inference.width)
        if (
            array.ndim != 4
            or array.dtype != np.uint8
            or array.shape[1:3] != expected
            or array.shape[3] not in (3, 4)
        ):
            raise RenderError(
                f"encode_image: images must be uint8 (B, {expected[0]}, {expected[1]}, 3 or 4), "
                f"got {array.dtype} {array.shape}"
            )
        with torch.inference_mode():
            pixels = torch.from_numpy(np.ascontiguousarray(array[..., :3])).to(self.device)
            pixels = pixels.permute(0, 3, 1, 2).to(self._vae_dtype) / 127.5 - 1.0
            encoded = pipe.vae.encode(pixels)
            raw: torch.Tensor = (
                encoded.latents if hasattr(encoded, "latents") else encoded.latent_dist.mode()
            )
            config = pipe.vae.config
            shift = float(getattr(config, "shift_factor", None) or 0.0)
            return (raw.float() - shift) * float(config.scaling_factor)

    def predict_x0(
        self,
        samples: torch.Tensor,
        step_indices: torch.Tensor,
        prompt_embeds: Conditioning,
        schedule: StepSchedule,
    ) -> torch.Tensor:
        self.load_model()
        batch = samples.shape[0]
        cond = self._unet_inputs(self._check_conditioning(prompt_embeds, batch))
        with torch.inference_mode():
            samples = samples.to(self.device, torch.float32)
            indices = step_indices.to(self.device)
            output = self._unet(samples, schedule.timestep(indices), cond)
            return schedule.clean(samples, output, indices)

    # the per-frame tensor functions (no host synchronisation: graph- and compile-safe)

    def _frame(
        self,
        latents: torch.Tensor,
        table: torch.Tensor,
        init: torch.Tensor | None,
        embeds: torch.Tensor,
        pooled: torch.Tensor | None,
        uncond: torch.Tensor | None,
        uncond_pooled: torch.Tensor | None,
        guidance: torch.Tensor | None,
        time_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        schedule = StepSchedule(table, self._prediction)
        cond = UnetInputs(embeds, pooled, uncond, uncond_pooled, guidance, time_ids)
        x0 = self._denoise_steps(latents, schedule, init, cond)
        rgba, finite = self._to_rgba(x0)
        return x0, rgba, finite

    def _denoise_steps(
        self,
        noise: torch.Tensor,
        schedule: StepSchedule,
        init: torch.Tensor | None,
        cond: UnetInputs,
    ) -> torch.Tensor:
        sample = schedule.start(noise, init)
        x0 = sample
        for step in range(schedule.steps):
            output = self._unet(sample, schedule.timestep(step), cond)
            x0 = schedule.clean(sample, output, step)
            if step + 1 < schedule.steps:
                # re-noised with the frame's own noise, so a frame is a function of its latent
                sample = schedule.renoise(x0, noise, step + 1)
        return x0

    def _unet(self, sample: torch.Tensor, timestep: torch.Tensor, cond: UnetInputs) -> torch.Tensor:
        batch = sample.shape[0]
        embeds, pooled, time_ids = cond.embeds, cond.pooled, cond.time_ids
        if embeds.shape[0] != batch:
            embeds = embeds.expand(batch, -1, -1)
        if pooled is not None and pooled.shape[0] != batch:
            pooled = pooled.expand(batch, -1)
        model_input = sample.to(self.dtype)
        uncond, guidance = cond.uncond, cond.guidance
        if uncond is not None and guidance is not None:
            model_input = torch.cat([model_input, model_input])
            embeds = torch.cat([uncond.expand(batch, -1, -1), embeds])
            if pooled is not None and cond.uncond_pooled is not None:
                pooled = torch.cat([cond.uncond_pooled.expand(batch, -1), pooled])
            if timestep.ndim:
                timestep = torch.cat([timestep, timestep])
        if time_ids is not None:
            time_ids = time_ids.expand(model_input.shape[0], -1)
        extra = () if pooled is None or time_ids is None else (pooled, time_ids)
        if self._traced_unet is not None:
            output = self._traced_unet(model_input, timestep, embeds, *extra).float()
        else:
            output = UnetCall.call(self._pipe.unet, model_input, timestep, embeds, *extra).float()
        if uncond is None or guidance is None:
            return output
        unconditional, conditional = output.chunk(2)
        return unconditional + guidance * (conditional - unconditional)

    def _to_rgba(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded RGBA ``uint8`` frames and a 0-d bool on the device: all pixels finite
        (checked before the conversion, which would turn NaN into arbitrary bytes)."""
        vae = self._pipe.vae
        shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
        scaled = (latents / float(vae.config.scaling_factor) + shift).to(self._vae_dtype)
        if self.device.type == "cpu" and scaled.shape[0] > 1:
            # on the cpu one frame's full-size activations stay in cache, a batch's do not:
            # decoding frame by frame is faster (the unet still gets the whole batch)
            parts = [self._decode_rgba(one) for one in scaled.split(1)]
            return torch.cat([p[0] for p in parts]), torch.stack([p[1] for p in parts]).all()
        return self._decode_rgba(scaled)

    def _decode_rgba(self, scaled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = self._pipe.vae.decode(scaled, return_dict=False)[0]
        return rgba_uint8(images), torch.isfinite(images).all()

    # input checks

    def _step_inputs(
        self,
        latents: torch.Tensor,
        prompt_embeds: Conditioning,
        strength: float,
        init_latents: torch.Tensor | None,
    ) -> StepArgs:
        """The per-frame step's arguments (see :meth:`_frame`), checked and on the device."""
        latents, init, cond = self._inputs(latents, prompt_embeds, strength, init_latents)
        schedule = self.step_schedule(strength if init is not None else 1.0)
        return (latents, schedule.table, init, *cond.tensors())

    def _inputs(
        self,
        latents: torch.Tensor,
        prompt_embeds: Conditioning,
        strength: float,
        init_latents: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, UnetInputs]:
        self._check_latents(latents)
        batch = latents.shape[0]
        conditioning = self._check_conditioning(prompt_embeds, batch)
        if not 0.0 <= strength <= 1.0:
            raise RenderError(f"strength: {strength} is outside [0, 1]")
        init = None
        if strength < 1.0:
            if init_latents is None:
                raise RenderError("strength below 1 needs init_latents (the image to start from)")
            if tuple(init_latents.shape) != tuple(latents.shape):
                raise RenderError(
                    f"init_latents: expected {tuple(latents.shape)}, got {tuple(init_latents.shape)}"
                )
            init = init_latents.to(self.device, torch.float32)
        cond = self._unet_inputs(conditioning)
        return latents.to(self.device, torch.float32), init, cond

    def _check_conditioning(self, prompt_embeds: Conditioning, batch: int) -> TextConditioning:
        """Prompt embeddings of the model's width for 1 or ``batch`` frames, on the device.
        (The sdxl kind also checks the pooled embeddings.)"""
        if isinstance(prompt_embeds, torch.Tensor) and prompt_embeds.ndim != 3:
            raise RenderError(
                f"prompt_embeds: expected (1 or {batch}, seq, {self._text_width()}), "
                f"got {tuple(prompt_embeds.shape)}"
            )
        cond = as_conditioning(prompt_embeds)
        hidden = self._text_width()
        if cond.batch not in (1, batch) or cond.embeds.shape[2] != hidden:
            raise RenderError(
                f"prompt_embeds: expected (1 or {batch}, seq, {hidden}), "
                f"got {tuple(cond.embeds.shape)}"
            )
        return cond.to(self.device, self.dtype)

    def _text_width(self) -> int:
        """The width of the prompt embeddings the unet attends to."""
        return int(self.pipe.unet.config.cross_attention_dim)

    def _unet_inputs(self, cond: TextConditioning) -> UnetInputs:
        """Everything the unet takes besides the sample and timestep (guidance included)."""
        uncond, guidance = self._guidance()
        return UnetInputs(
            cond.embeds,
            cond.pooled,
            None if uncond is None else uncond.embeds,
            None if uncond is None else uncond.pooled,
            guidance,
            self._time_ids(),
        )

    def _time_ids(self) -> torch.Tensor | None:
        """SDXL's size conditioning (none for SD 1.x/2.x)."""
        return None

    def _guidance(self) -> tuple[TextConditioning | None, torch.Tensor | None]:
        """Classifier-free guidance inputs: the negative prompt's conditioning and the scale.

        The negative prompt is encoded when it differs from the text last encoded, so once per
        change (``negative_encodes`` counts it)."""
        scale = self.inference_config.guidance_scale
        if scale <= 1.0:
            return None, None
        if self._uncond is None or self._uncond_text != self.negative_prompt:
            self._uncond = self._encode_negative(self.negative_prompt)
            self._uncond_text = self.negative_prompt
            self.negative_encodes += 1
        return self._uncond, torch.tensor(scale, device=self.device)

    def _encode_negative(self, text: str) -> TextConditioning:
        """The unconditional input for ``text`` (the sdxl kind zeroes an empty one)."""
        return as_conditioning(self.encode_prompt(text))

    def _token_ids(self, tokenizer: Any, encoder: Any, texts: list[str]) -> torch.Tensor:
        """``texts`` as token ids on the device, padded and cut to what ``encoder`` takes."""
        limit = min(int(tokenizer.model_max_length), int(encoder.config.max_position_embeddings))
        tokens = tokenizer(
            texts, padding="max_length", max_length=limit, truncation=True, return_tensors="pt"
        )
        ids: torch.Tensor = tokens.input_ids
        return ids.to(self.device)


class SD15Pipeline(LatentDiffusionPipeline[torch.Tensor]):
    """An SD 1.x/2.x-layout diffusers model (or the built-in ``tiny``/``tiny-sd2``) as a frame
    renderer: the ``sd`` kind. Prompt embeddings are plain tensors ``(n, 77, hidden)``."""

    is_xl = False

    def encode_prompt(self, prompt: str | list[str]) -> torch.Tensor:
        texts = prompt_texts(prompt)
        pipe = self.pipe
        with torch.inference_mode():
            ids = self._token_ids(pipe.tokenizer, pipe.text_encoder, texts)
            embeds: torch.Tensor = pipe.text_encoder(ids)[0]
            return embeds.to(self.dtype)


SDPipeline = SD15Pipeline


def text_encoders(pipe: Any) -> list[Any]:
    """A pipeline's text encoders (one for SD, two for SDXL)."""
    return [
        encoder
        for encoder in (getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None))
        if encoder is not None
    ]


class UnetCall(torch.nn.Module):
    """A diffusers unet as ``(sample, timestep, embeds[, pooled, time_ids]) -> noise
    prediction``: a plain tensor function that :class:`~engine.diffusion.traced.TracedCalls` can
    record (SDXL's added conditioning as two more tensors)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        embeds: torch.Tensor,
        pooled: torch.Tensor | None = None,
        time_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.call(self.unet, sample, timestep, embeds, pooled, time_ids)

    @staticmethod
    def call(
        unet: Any,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        embeds: torch.Tensor,
        pooled: torch.Tensor | None = None,
        time_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The diffusers call itself, with SDXL's ``added_cond_kwargs`` when given."""
        added = None if pooled is None else {"text_embeds": pooled, "time_ids": time_ids}
        output: torch.Tensor = unet(
            sample,
            timestep,
            encoder_hidden_states=embeds,
            added_cond_kwargs=added,
            return_dict=False,
        )[0]
        return output


def rgba_uint8(images: torch.Tensor) -> torch.Tensor:
    """Decoded images ``(B, 3, H, W)`` in [-1, 1] as RGBA ``uint8`` frames ``(B, H, W, 4)``.

    One working copy scaled in place and one strided write into the frame (alpha preset): no
    separate pad and permute copies, which cost several times as much on the cpu.
    """
    batch, _, height, width = images.shape
    frames = torch.empty((batch, height, width, 4), dtype=torch.uint8, device=images.device)
    frames[..., 3] = 255
    # float() keeps half-precision decoders' output exact; add() makes the one working copy
    pixels = images.permute(0, 2, 3, 1).float().add(1.0)
    frames[..., :3] = pixels.mul_(127.5).round_().clamp_(0.0, 255.0)
    return frames

"""Few-step sampling without the scheduler in the loop.

The scheduler is asked once, at load or when the step count or strength changes, for its
timesteps and noise levels; :class:`StepSchedule` then holds them in one small device tensor
and does the per-step arithmetic itself (predict the clean latent, re-noise it to the next
level with the frame's own noise, as StreamDiffusion does). No Python-side scheduler state, no
host synchronisation, so the per-frame step can be captured as a CUDA graph, and a schedule
for another strength is just another tensor of the same shape.

Noise levels are written in the variance-preserving form ``x_t = sqrt(a) x0 + sqrt(1 - a) n``;
sigma-parameterised schedulers (Euler) map onto it with ``a = 1 / (1 + sigma^2)``, which is
exactly the input scaling they apply before the unet.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

log = logging.getLogger(__name__)

SchedulerKind = Literal["lcm", "tcd", "euler_ancestral"]
PredictionType = Literal["epsilon", "v_prediction", "sample"]

# rows of StepSchedule.table
_T, _SQRT_A, _SQRT_1MA, _C_SKIP, _C_OUT, _START = range(6)


def auto_scheduler_kind(choice: str, model: str, lora: str | None) -> SchedulerKind | None:
    """The scheduler a model wants: LCM for LCM-LoRA, TCD for Hyper-SD(XL), Euler ancestral
    from the last timestep for sd-turbo, sdxl-turbo and SDXL-Lightning; ``None`` keeps the
    model's own. An explicit choice wins."""
    if choice != "auto":
        return choice  # type: ignore[return-value]  # validated by DiffusionConfig
    names = f"{lora or ''} {model}".lower()
    if "hyper" in names:
        return "tcd"
    if "lcm" in names:
        return "lcm"
    if "turbo" in names or "lightning" in names:
        return "euler_ancestral"
    return None


def make_scheduler(current: Any, kind: SchedulerKind | None) -> Any:
    """A scheduler of ``kind`` built from ``current``'s config (``None``: keep ``current``).

    PNDM, SD 1.5's default, is a 50-step multistep method that cannot run in 1 to 4 steps;
    it is replaced by Euler ancestral even when asked to keep the model's scheduler.
    """
    from diffusers import (
        EulerAncestralDiscreteScheduler,
        LCMScheduler,
        PNDMScheduler,
        TCDScheduler,
    )

    if kind is None and isinstance(current, PNDMScheduler):
        log.info("PNDM cannot sample in 1-4 steps: using Euler ancestral (trailing) instead")
        kind = "euler_ancestral"
    if kind is None:
        return current
    if kind == "lcm":
        return LCMScheduler.from_config(current.config)
    if kind == "tcd":
        return TCDScheduler.from_config(current.config)
    return EulerAncestralDiscreteScheduler.from_config(current.config, timestep_spacing="trailing")


@dataclass(frozen=True, eq=False)
class StepSchedule:
    """The timesteps and noise levels of one frame's steps, and the arithmetic between them.

    ``table`` is a ``(6, steps)`` float32 tensor on the model's device: timesteps,
    ``sqrt(a)``, ``sqrt(1 - a)``, the consistency models' ``c_skip`` and ``c_out`` (0 and 1 for
    other schedulers) and, repeated, the scale that turns unit noise into the first step's input
    for text-to-image. Index arguments are a step number or a ``(B,)`` tensor of step numbers
    (one per sample, for the stream batch).
    """

    table: torch.Tensor
    prediction_type: PredictionType = "epsilon"
    strength: float = 1.0

    @property
    def steps(self) -> int:
        return int(self.table.shape[1])

    def with_table(self, table: torch.Tensor) -> StepSchedule:
        """The same schedule reading its numbers from ``table`` (a CUDA graph's static copy)."""
        return StepSchedule(table, self.prediction_type, self.strength)

    def timestep(self, index: int | torch.Tensor) -> torch.Tensor:
        return self.table[_T, index]

    def start(self, noise: torch.Tensor, init: torch.Tensor | None = None) -> torch.Tensor:
        """The first step's input: scaled noise, or ``init`` noised to the first level."""
        if init is None:
            return noise * self.table[_START, 0]
        return self.table[_SQRT_A, 0] * init + self.table[_SQRT_1MA, 0] * noise

    def clean(
        self, sample: torch.Tensor, output: torch.Tensor, index: int | torch.Tensor
    ) -> torch.Tensor:
        """The clean latent predicted from the unet's ``output`` at step ``index``."""
        sqrt_a, sqrt_1ma = self._row(_SQRT_A, index), self._row(_SQRT_1MA, index)
        if self.prediction_type == "epsilon":
            x0 = (sample - sqrt_1ma * output) / sqrt_a
        elif self.prediction_type == "v_prediction":
            x0 = sqrt_a * sample - sqrt_1ma * output
        else:
            x0 = output
        return self._row(_C_OUT, index) * x0 + self._row(_C_SKIP, index) * sample

    def renoise(
        self, x0: torch.Tensor, noise: torch.Tensor, index: int | torch.Tensor
    ) -> torch.Tensor:
        """``x0`` noised with ``noise`` to the level of step ``index``."""
        return self._row(_SQRT_A, index) * x0 + self._row(_SQRT_1MA, index) * noise

    def _row(self, row: int, index: int | torch.Tensor) -> torch.Tensor:
        values = self.table[row, index]
        # per-sample steps broadcast over (B, C, H, W)
        return values.view(-1, 1, 1, 1) if values.ndim else values


def build_step_schedule(
    scheduler: Any, steps: int, strength: float, device: torch.device
) -> StepSchedule:
    """Ask ``scheduler`` (on a private copy) for ``steps`` steps at ``strength``.

    Strength 1 starts from pure noise. Below 1 (img2img) the steps are the last ``steps`` of a
    longer schedule that would span the whole range, so a strength of 0.5 with one step runs the
    middle timestep, as sd-turbo's image-to-image does.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must lie in (0, 1], got {strength}")
    sched = type(scheduler).from_config(scheduler.config)
    limit = int(
        getattr(sched.config, "original_inference_steps", None) or sched.config.num_train_timesteps
    )
    total = steps if strength >= 1.0 else min(limit, max(steps, math.ceil(steps / strength)))
    sched.set_timesteps(total)
    all_timesteps = [float(t) for t in sched.timesteps]
    timesteps = all_timesteps[-steps:] if strength < 1.0 else all_timesteps[:steps]
    alphas = [_alpha_at(sched, all_timesteps, t) for t in timesteps]
    c_skip, c_out = zip(*(_boundary(sched, t) for t in timesteps), strict=True)
    # unit noise times the scheduler's initial sigma, as it would scale it for the unet
    first = sched.timesteps[all_timesteps.index(timesteps[0])]
    unit = torch.full((1,), float(sched.init_noise_sigma))
    start = float(sched.scale_model_input(unit, first)[0])
    table = torch.tensor(
        [
            timesteps,
            [math.sqrt(a) for a in alphas],
            [math.sqrt(1.0 - a) for a in alphas],
            list(c_skip),
            list(c_out),
            [start] * len(timesteps),
        ],
        dtype=torch.float32,
    )
    prediction: PredictionType = sched.config.prediction_type
    return StepSchedule(table.to(device), prediction, float(strength))


def _alpha_at(sched: Any, all_timesteps: list[float], t: float) -> float:
    sigmas = getattr(sched, "sigmas", None)
    if sigmas is not None and len(sigmas) == len(all_timesteps) + 1:
        sigma = float(sigmas[all_timesteps.index(t)])
        return 1.0 / (1.0 + sigma * sigma)
    return float(sched.alphas_cumprod[round(t)])


def _boundary(sched: Any, t: float) -> tuple[float, float]:
    scalings = getattr(sched, "get_scalings_for_boundary_condition_discrete", None)
    if scalings is None:
        return 0.0, 1.0
    c_skip, c_out = scalings(round(t))
    return float(c_skip), float(c_out)

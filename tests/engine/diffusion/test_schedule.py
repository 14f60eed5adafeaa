"""Few-step schedules: which scheduler, which timesteps, and the arithmetic between steps."""

from __future__ import annotations

import math

import pytest
import torch

# from their modules: to a type checker diffusers' top-level names are its dummy objects
from diffusers.schedulers.scheduling_euler_ancestral_discrete import (
    EulerAncestralDiscreteScheduler,
)
from diffusers.schedulers.scheduling_lcm import LCMScheduler
from diffusers.schedulers.scheduling_pndm import PNDMScheduler
from diffusers.schedulers.scheduling_tcd import TCDScheduler

from engine.diffusion.schedule import (
    StepSchedule,
    auto_scheduler_kind,
    build_step_schedule,
    make_scheduler,
)

SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("choice", "model", "lora", "expected"),
    [
        ("auto", "stabilityai/sd-turbo", None, "euler_ancestral"),
        ("auto", "runwayml/stable-diffusion-v1-5", "latent-consistency/lcm-lora-sdv1-5", "lcm"),
        ("auto", "my-model", "ByteDance/Hyper-SD/Hyper-SD15-1step-lora.safetensors", "tcd"),
        ("auto", "/models/dreamshaper", None, None),
        ("auto", "stabilityai/sdxl-turbo", None, "euler_ancestral"),
        (
            "auto",
            "sdxl-base",
            "ByteDance/SDXL-Lightning/sdxl_lightning_2step_lora.safetensors",
            "euler_ancestral",
        ),
        ("auto", "sdxl-base", "ByteDance/Hyper-SD/Hyper-SDXL-1step-lora.safetensors", "tcd"),
        ("lcm", "stabilityai/sd-turbo", None, "lcm"),
    ],
)
def test_auto_picks_the_accelerators_scheduler(
    choice: str, model: str, lora: str | None, expected: str | None
) -> None:
    assert auto_scheduler_kind(choice, model, lora) == expected


def test_make_scheduler_builds_from_the_models_config() -> None:
    pndm = PNDMScheduler(**SD_BETAS)
    replaced = make_scheduler(pndm, None)  # sd 1.5's default cannot do 1-4 steps
    assert isinstance(replaced, EulerAncestralDiscreteScheduler)
    assert replaced.config.timestep_spacing == "trailing"
    assert replaced.config.beta_end == pytest.approx(0.012)
    euler = EulerAncestralDiscreteScheduler(**SD_BETAS)
    assert make_scheduler(euler, None) is euler
    assert isinstance(make_scheduler(euler, "lcm"), LCMScheduler)
    assert isinstance(make_scheduler(euler, "tcd"), TCDScheduler)


def test_timesteps_for_steps_and_strength() -> None:
    euler = EulerAncestralDiscreteScheduler(**SD_BETAS, timestep_spacing="trailing")
    lcm = LCMScheduler(**SD_BETAS)
    assert build_step_schedule(euler, 1, 1.0, CPU).timestep(0).item() == 999
    assert build_step_schedule(euler, 1, 0.5, CPU).timestep(0).item() == 499  # sd-turbo img2img
    two = build_step_schedule(lcm, 2, 1.0, CPU)
    assert two.table[0].tolist() == [999.0, 499.0]
    assert two.steps == 2
    weak = build_step_schedule(lcm, 1, 0.01, CPU)  # capped by lcm's 50-step grid
    assert weak.timestep(0).item() == 19.0


def test_first_input_scale_follows_the_scheduler() -> None:
    euler = EulerAncestralDiscreteScheduler(**SD_BETAS, timestep_spacing="trailing")
    alpha = float(euler.alphas_cumprod[999])
    sigma = math.sqrt((1 - alpha) / alpha)
    schedule = build_step_schedule(euler, 1, 1.0, CPU)
    # euler starts at sigma_max and scales by 1 / sqrt(sigma^2 + 1) before the unet
    assert schedule.start(torch.ones(1)).item() == pytest.approx(
        sigma / math.sqrt(sigma**2 + 1), rel=1e-5
    )
    assert (
        build_step_schedule(LCMScheduler(**SD_BETAS), 1, 1.0, CPU).start(torch.ones(1)).item()
        == 1.0
    )


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_clean_inverts_renoise(prediction: str) -> None:
    scheduler = EulerAncestralDiscreteScheduler(
        **SD_BETAS, timestep_spacing="trailing", prediction_type=prediction
    )
    schedule = build_step_schedule(scheduler, 4, 1.0, CPU)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 4, 8, 8, generator=generator)
    noise = torch.randn(2, 4, 8, 8, generator=generator)
    for step in range(4):
        sample = schedule.renoise(x0, noise, step)
        sqrt_a, sqrt_1ma = schedule.table[1, step], schedule.table[2, step]
        exact = {"epsilon": noise, "v_prediction": sqrt_a * noise - sqrt_1ma * x0, "sample": x0}
        torch.testing.assert_close(schedule.clean(sample, exact[prediction], step), x0)


def test_per_sample_steps_broadcast() -> None:
    scheduler = LCMScheduler(**SD_BETAS)
    schedule = build_step_schedule(scheduler, 3, 1.0, CPU)
    x0 = torch.randn(3, 4, 8, 8)
    noise = torch.randn(3, 4, 8, 8)
    steps = torch.arange(3)
    together = schedule.renoise(x0, noise, steps)
    for i in range(3):
        torch.testing.assert_close(
            together[i : i + 1], schedule.renoise(x0[i : i + 1], noise[i : i + 1], i)
        )
    assert schedule.timestep(steps).tolist() == schedule.table[0].tolist()


def test_init_is_noised_to_the_first_level() -> None:
    schedule = build_step_schedule(LCMScheduler(**SD_BETAS), 1, 0.5, CPU)
    init, noise = torch.full((1, 4, 2, 2), 2.0), torch.zeros(1, 4, 2, 2)
    torch.testing.assert_close(schedule.start(noise, init), init * schedule.table[1, 0])
    assert isinstance(schedule.with_table(schedule.table.clone()), StepSchedule)


def test_impossible_requests_are_refused() -> None:
    scheduler = LCMScheduler(**SD_BETAS)
    with pytest.raises(ValueError, match="steps"):
        build_step_schedule(scheduler, 0, 1.0, CPU)
    with pytest.raises(ValueError, match="strength"):
        build_step_schedule(scheduler, 1, 0.0, CPU)

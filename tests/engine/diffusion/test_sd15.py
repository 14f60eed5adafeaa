"""The SD 1.5 driver on the tiny model: frames, determinism, agreement with diffusers, inputs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from benchmarks.bench_engine import plain_frame
from engine.diffusion.device import resolve_device, resolve_dtype
from engine.diffusion.host import NonFiniteFrameError
from engine.diffusion.sd15 import LatentDiffusionPipeline, SD15Pipeline
from engine.diffusion.tiny import build_tiny_pipeline
from engine.errors import ModelError, RenderError
from tests.engine.diffusion.support import SEED, SIZE, tiny_configs

Noise = Callable[..., torch.Tensor]


@contextmanager
def unet_batches(pipeline: LatentDiffusionPipeline) -> Iterator[list[int]]:
    """The batch size of every unet call made inside the block (a real forward hook)."""
    batches: list[int] = []
    handle = pipeline.pipe.unet.register_forward_hook(
        lambda _module, args, _output: batches.append(int(args[0].shape[0]))
    )
    try:
        yield batches
    finally:
        handle.remove()


def diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_frames_are_rgba_uint8_contiguous(tiny: SD15Pipeline, noise: Noise) -> None:
    embeds = tiny.encode_prompt("abstract light")
    assert embeds.shape == (1, 77, 32)
    assert embeds.dtype == tiny.dtype
    assert tiny.get_latent_shape() == (1, 4, SIZE // 8, SIZE // 8)
    frames = tiny.generate_batch(noise(1, batch=3), embeds)
    assert frames.shape == (3, SIZE, SIZE, 4)
    assert frames.dtype == np.uint8
    assert frames.flags.c_contiguous
    assert frames[0].flags.c_contiguous
    assert (frames[..., 3] == 255).all()
    assert not tiny.supports_pooled_embeds()


def test_same_seed_same_frames_across_pipelines(tiny: SD15Pipeline, noise: Noise) -> None:
    embeds = tiny.encode_prompt("neon rain")
    first = tiny.generate_batch(noise(5), embeds)
    np.testing.assert_array_equal(first, tiny.generate_batch(noise(5), embeds))
    fresh = SD15Pipeline(*tiny_configs())
    np.testing.assert_array_equal(
        first, fresh.generate_batch(noise(5), fresh.encode_prompt("neon rain"))
    )


def test_one_step_matches_the_plain_diffusers_call(tiny: SD15Pipeline, noise: Noise) -> None:
    embeds = tiny.encode_prompt("golden mist")
    expected = plain_frame(tiny.pipe, noise(3), 1, prompt_embeds=embeds)
    ours = tiny.generate_batch(noise(3), embeds)[0]
    assert diff(ours, expected) <= 1  # float rounding at the uint8 boundary


def test_lcm_scheduler_matches_diffusers_too(noise: Noise) -> None:
    from diffusers import LCMScheduler

    pipeline = SD15Pipeline(*tiny_configs(scheduler="lcm"))
    assert isinstance(pipeline.pipe.scheduler, LCMScheduler)
    embeds = pipeline.encode_prompt("golden mist")
    expected = plain_frame(pipeline.pipe, noise(3), 1, prompt_embeds=embeds)
    assert diff(pipeline.generate_batch(noise(3), embeds)[0], expected) <= 1


def test_a_batch_renders_like_its_frames_one_by_one(tiny: SD15Pipeline, noise: Noise) -> None:
    embeds = tiny.encode_prompt("abstract light")
    latents = noise(9, batch=3)
    batched = tiny.generate_batch(latents, embeds)
    for i in range(3):
        assert diff(batched[i], tiny.generate_batch(latents[i : i + 1], embeds)[0]) <= 1
    per_frame = tiny.encode_prompt(["a", "b", "c"])
    assert tiny.generate_batch(latents, per_frame).shape == (3, SIZE, SIZE, 4)


def test_render_is_denoise_then_decode(tiny: SD15Pipeline, noise: Noise) -> None:
    embeds = tiny.encode_prompt("abstract light")
    result = tiny.render(noise(4), embeds)
    clean = tiny.denoise(noise(4), embeds)
    torch.testing.assert_close(result.latents, clean)
    np.testing.assert_array_equal(result.frames, tiny.decode(clean))


def test_step_count_is_read_per_call(tiny: SD15Pipeline, noise: Noise) -> None:
    embeds = tiny.encode_prompt("abstract light")
    one = tiny.generate_batch(noise(2), embeds)
    tiny.inference_config.num_inference_steps = 3
    with unet_batches(tiny) as batches:
        three = tiny.generate_batch(noise(2), embeds)
    assert batches == [1, 1, 1]
    assert diff(one, three) > 0


def test_guidance_doubles_the_batch_and_changes_the_frame(tiny: SD15Pipeline, noise: Noise) -> None:
    embeds = tiny.encode_prompt("abstract light")
    plain = tiny.generate_batch(noise(2), embeds)
    tiny.inference_config.guidance_scale = 4.0
    with unet_batches(tiny) as batches:
        guided = tiny.generate_batch(noise(2), embeds)
    assert batches == [2]
    assert diff(plain, guided) > 0


def test_img2img_stays_near_its_init_at_low_strength(tiny: SD15Pipeline, noise: Noise) -> None:
    embeds = tiny.encode_prompt("abstract light")
    start = tiny.render(noise(1), embeds)
    near = tiny.render(noise(2), embeds, strength=0.05, init_latents=start.latents).frames
    far = tiny.render(noise(2), embeds).frames
    gap_near = np.abs(near.astype(float) - start.frames).mean()
    gap_far = np.abs(far.astype(float) - start.frames).mean()
    assert gap_near < gap_far / 3
    with pytest.raises(RenderError, match="init_latents"):
        tiny.render(noise(2), embeds, strength=0.5)


def test_encode_image_gives_latents_of_the_frame_shape(tiny: SD15Pipeline, noise: Noise) -> None:
    frames = tiny.generate_batch(noise(1, batch=2), tiny.encode_prompt("x"))
    latents = tiny.encode_image(frames)
    assert latents.shape == (2, 4, SIZE // 8, SIZE // 8)
    assert tiny.encode_image(frames[0, ..., :3]).shape == (1, 4, SIZE // 8, SIZE // 8)
    with pytest.raises(RenderError, match="encode_image"):
        tiny.encode_image(np.zeros((32, 32, 4), np.uint8))


def test_bad_inputs_name_the_argument(tiny: SD15Pipeline, noise: Noise) -> None:
    embeds = tiny.encode_prompt("x")
    with pytest.raises(RenderError, match="latents"):
        tiny.generate_batch(torch.zeros(1, 4, 3, 3), embeds)
    with pytest.raises(RenderError, match="prompt_embeds"):
        tiny.generate_batch(noise(1), torch.zeros(1, 77, 5))
    with pytest.raises(RenderError, match="prompt_embeds"):
        tiny.generate_batch(noise(1, batch=3), embeds.expand(2, -1, -1))
    with pytest.raises(RenderError, match="prompt"):
        tiny.encode_prompt([])


def test_memory_layout_does_not_change_the_picture(tiny: SD15Pipeline, noise: Noise) -> None:
    plain = SD15Pipeline(*tiny_configs(channels_last=False))
    embeds = tiny.encode_prompt("abstract light")
    assert diff(plain.generate_batch(noise(6), embeds), tiny.generate_batch(noise(6), embeds)) <= 1


def test_devices_and_dtypes_resolve_or_are_refused() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
        assert resolve_device("auto").type == "cuda"
    else:
        with pytest.raises(ModelError, match="'cuda'"):
            resolve_device("cuda")
        with pytest.raises(ModelError, match="cuda:3"):
            SD15Pipeline(*tiny_configs(device="cuda:3"))


def test_a_given_diffusers_pipeline_is_driven_as_is(tiny: SD15Pipeline, noise: Noise) -> None:
    given = SD15Pipeline(
        *tiny_configs(model="unused"), pipe=build_tiny_pipeline(SEED, SIZE, SIZE), label="mine"
    )
    assert given.model_label == "mine"
    assert not given.is_untrained
    embeds = tiny.encode_prompt("abstract light")
    np.testing.assert_array_equal(
        given.generate_batch(noise(1), embeds), tiny.generate_batch(noise(1), embeds)
    )


def test_a_frame_with_nan_is_refused_before_uint8(tiny: SD15Pipeline, noise: Noise) -> None:
    """NaN would become arbitrary bytes in the uint8 conversion: the decoded image is checked
    on the device first, and such a frame never comes out."""
    embeds = tiny.encode_prompt("x")
    poisoned = noise(0).clone()
    poisoned[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteFrameError, match="NaN"):
        tiny.render(poisoned, embeds)
    with pytest.raises(NonFiniteFrameError):
        tiny.decode(torch.full((2, 4, 8, 8), float("nan")))  # the batched cpu decode too
    assert tiny.render(noise(0), embeds).frames.shape == (1, 64, 64, 4)

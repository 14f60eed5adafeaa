"""The SDXL kind on tiny-sdxl, and guidance with the negative prompt on both kinds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks.bench_engine import plain_frame
from engine.diffusion.conditioning import TextConditioning
from engine.diffusion.sd15 import LatentDiffusionPipeline, SD15Pipeline
from engine.diffusion.sdxl import SDXLPipeline
from engine.diffusion.tiny import build_tiny_pipeline, build_tiny_sdxl_components
from engine.errors import ModelError, RenderError
from tests.engine.diffusion.support import SEED, SIZE, save_random_lora, tiny_configs

Noise = Callable[..., torch.Tensor]


def diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_a_prompt_becomes_token_and_pooled_embeddings(tiny_xl: SDXLPipeline, noise: Noise) -> None:
    cond = tiny_xl.encode_prompt("abstract light")
    assert isinstance(cond, TextConditioning)
    assert tiny_xl.supports_pooled_embeds()
    # both encoders' penultimate states side by side (32 + 48), the second's projection pooled
    assert cond.embeds.shape == (1, 77, 80)
    assert cond.pooled is not None
    assert cond.pooled.shape == (1, 48)
    assert tiny_xl.get_latent_shape() == (1, 4, SIZE // 8, SIZE // 8)
    frames = tiny_xl.generate_batch(noise(1, batch=2), cond)
    assert frames.shape == (2, SIZE, SIZE, 4)
    assert frames.dtype == np.uint8
    assert frames.flags.c_contiguous
    assert (frames[..., 3] == 255).all()
    assert frames[..., :3].std() > 20
    assert "untrained" in tiny_xl.model_label
    assert tiny_xl.is_untrained


def test_one_step_matches_the_plain_diffusers_sdxl_call(
    tiny_xl: SDXLPipeline, noise: Noise
) -> None:
    cond = tiny_xl.encode_prompt("golden mist")
    expected = plain_frame(
        tiny_xl.pipe, noise(3), 1, prompt_embeds=cond.embeds, pooled_prompt_embeds=cond.pooled
    )
    assert diff(tiny_xl.generate_batch(noise(3), cond)[0], expected) <= 1
    # and the prompt itself, encoded by diffusers, gives the same embeddings
    embeds, _, pooled, _ = tiny_xl.pipe.encode_prompt(
        "golden mist", device="cpu", do_classifier_free_guidance=False
    )
    torch.testing.assert_close(cond.embeds, embeds)
    torch.testing.assert_close(cond.pooled, pooled)


def test_pooled_embeddings_and_time_ids_reach_the_unet(tiny_xl: SDXLPipeline, noise: Noise) -> None:
    seen: list[dict[str, Any]] = []

    def watch(_module: torch.nn.Module, _args: Any, kwargs: dict[str, Any]) -> None:
        seen.append(kwargs["added_cond_kwargs"])

    cond = tiny_xl.encode_prompt("abstract light")
    handle = tiny_xl.pipe.unet.register_forward_pre_hook(watch, with_kwargs=True)
    try:
        tiny_xl.generate_batch(noise(1), cond)
    finally:
        handle.remove()
    (added,) = seen
    assert cond.pooled is not None
    torch.testing.assert_close(added["text_embeds"], cond.pooled)
    # (original size, crop top-left, target size): the frame, uncropped
    assert added["time_ids"].tolist() == [[SIZE, SIZE, 0, 0, SIZE, SIZE]]
    other = TextConditioning(cond.embeds, torch.zeros_like(cond.pooled))
    assert diff(tiny_xl.generate_batch(noise(1), other), tiny_xl.generate_batch(noise(1), cond)) > 0


def test_a_bare_tensor_or_a_wrong_pooled_width_is_refused(
    tiny_xl: SDXLPipeline, noise: Noise
) -> None:
    cond = tiny_xl.encode_prompt("x")
    with pytest.raises(RenderError, match="pooled"):
        tiny_xl.generate_batch(noise(1), cond.embeds)
    with pytest.raises(RenderError, match="pooled"):
        tiny_xl.generate_batch(noise(1), TextConditioning(cond.embeds, torch.zeros(1, 5)))
    with pytest.raises(RenderError, match="prompt_embeds"):
        tiny_xl.generate_batch(noise(1), TextConditioning(torch.zeros(1, 77, 7), cond.pooled))


def test_img2img_and_stream_steps_run_on_sdxl(tiny_xl: SDXLPipeline, noise: Noise) -> None:
    cond = tiny_xl.encode_prompt("abstract light")
    start = tiny_xl.render(noise(1), cond)
    near = tiny_xl.render(noise(2), cond, strength=0.05, init_latents=start.latents).frames
    far = tiny_xl.render(noise(2), cond).frames
    assert (
        np.abs(near.astype(float) - start.frames).mean()
        < np.abs(far.astype(float) - start.frames).mean() / 3
    )
    schedule = tiny_xl.step_schedule()
    x0 = tiny_xl.predict_x0(noise(1, batch=2), torch.tensor([0, 0]), cond, schedule)
    assert x0.shape == (2, 4, SIZE // 8, SIZE // 8)


@pytest.fixture(params=["tiny", "tiny-sdxl"])
def guided(
    request: pytest.FixtureRequest, tiny: SD15Pipeline, tiny_xl: SDXLPipeline
) -> LatentDiffusionPipeline:
    pipeline: LatentDiffusionPipeline = tiny if request.param == "tiny" else tiny_xl
    pipeline.inference_config.guidance_scale = 5.0
    return pipeline


def test_the_negative_prompt_steers_guidance_and_is_encoded_once_per_change(
    guided: LatentDiffusionPipeline, noise: Noise
) -> None:
    cond = guided.encode_prompt("abstract light")
    plain = guided.generate_batch(noise(1), cond)
    encodes = guided.negative_encodes
    guided.set_negative_prompt("dark smoke")
    steered = [guided.generate_batch(noise(1), cond) for _ in range(3)]
    assert guided.negative_encodes == encodes + 1  # one change, one encode, three frames
    assert diff(plain, steered[0]) > 3
    np.testing.assert_array_equal(steered[0], steered[2])
    guided.set_negative_prompt("dark smoke")  # the same text again: nothing to encode
    guided.generate_batch(noise(1), cond)
    assert guided.negative_encodes == encodes + 1
    guided.set_negative_prompt("")
    np.testing.assert_array_equal(guided.generate_batch(noise(1), cond), plain)
    assert guided.negative_encodes == encodes + 2


def test_without_guidance_the_negative_prompt_costs_nothing(
    tiny: SD15Pipeline, noise: Noise
) -> None:
    cond = tiny.encode_prompt("abstract light")
    encodes = tiny.negative_encodes
    plain = tiny.generate_batch(noise(1), cond)
    tiny.set_negative_prompt("dark smoke")
    np.testing.assert_array_equal(tiny.generate_batch(noise(1), cond), plain)
    assert tiny.negative_encodes == encodes


def test_an_empty_negative_prompt_is_zeros_for_sdxl(tiny_xl: SDXLPipeline) -> None:
    tiny_xl.inference_config.guidance_scale = 5.0
    uncond, scale = tiny_xl._guidance()
    assert uncond is not None
    assert uncond.pooled is not None
    assert scale is not None
    # force_zeros_for_empty_prompt
    assert not uncond.embeds.any()
    assert not uncond.pooled.any()
    tiny_xl.set_negative_prompt("smoke")
    uncond, _ = tiny_xl._guidance()
    assert uncond is not None
    assert uncond.embeds.abs().sum() > 0


@pytest.fixture(scope="module")
def xl_lora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA on the tiny SDXL unet's attention, saved the way Hyper-SDXL and
    SDXL-Lightning LoRAs ship."""
    return save_random_lora(tmp_path_factory.mktemp("xl-lora"), "tiny-sdxl")


def test_an_sdxl_lora_is_fused_at_load(xl_lora: Path, tiny_xl: SDXLPipeline, noise: Noise) -> None:
    fused = SDXLPipeline(*tiny_configs(model="tiny-sdxl", lora=str(xl_lora)))
    assert not [name for name, _ in fused.pipe.unet.named_modules() if "lora" in name]
    cond = tiny_xl.encode_prompt("abstract light")
    plain = tiny_xl.generate_batch(noise(1), cond)
    assert diff(fused.generate_batch(noise(1), cond), plain) > 0
    muted = SDXLPipeline(*tiny_configs(model="tiny-sdxl", lora=str(xl_lora), lora_scale=0.0))
    np.testing.assert_array_equal(muted.generate_batch(noise(1), cond), plain)


def test_sdxl_decodes_with_taesdxl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, noise: Noise
) -> None:
    kl_model = tmp_path / "kl-xl"
    build_tiny_pipeline(SEED, SIZE, SIZE, vae="kl", name="tiny-sdxl").save_pretrained(kl_model)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the default TAESD is SD's; an SDXL model asks for the SDXL one
    with pytest.raises(ModelError, match="madebyollin/taesdxl"):
        SDXLPipeline(*tiny_configs(model=str(kl_model), use_tiny_vae=True)).load_model()
    taesdxl = tmp_path / "taesdxl"
    build_tiny_sdxl_components(SEED)["vae"].save_pretrained(taesdxl)
    swapped = SDXLPipeline(
        *tiny_configs(model=str(kl_model), use_tiny_vae=True, tiny_vae=str(taesdxl))
    )
    from diffusers import AutoencoderTiny

    assert isinstance(swapped.pipe.vae, AutoencoderTiny)
    full = SDXLPipeline(*tiny_configs(model=str(kl_model), use_tiny_vae=False))
    cond = full.encode_prompt("x")
    for pipeline in (full, swapped):
        frames = pipeline.generate_batch(noise(1), cond)
        assert frames.shape == (1, SIZE, SIZE, 4)
        assert frames[..., :3].std() > 5

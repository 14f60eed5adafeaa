"""Single checkpoint files load offline: the family is read from the tensor names, the configs
and tokenizers are the packaged ones, nothing is fetched (the hub is set offline throughout)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.config import DiffusionConfig, InferenceConfig
from engine.diffusion.base import create_pipeline, model_kind
from engine.diffusion.clip_tokenizer import clip_tokenizer
from engine.diffusion.sd15 import SD15Pipeline
from engine.diffusion.sdxl import SDXLPipeline
from engine.diffusion.single_file import CONFIGS, FAMILIES, config_folder, detect_family
from engine.diffusion.tiny import build_tiny_pipeline
from engine.errors import ModelError
from tests.engine.diffusion.ldm_layout import original_layout
from tests.engine.diffusion.support import SEED, SIZE

Noise = Callable[..., torch.Tensor]
pytestmark = pytest.mark.usefixtures("offline")


def configs(model: str) -> tuple[DiffusionConfig, InferenceConfig]:
    diffusion = DiffusionConfig(model=model, device="cpu", seed=SEED, use_tiny_vae=False)
    return diffusion, InferenceConfig(height=SIZE, width=SIZE)


@pytest.mark.parametrize(
    ("name", "kind"), [("tiny", "sd"), ("tiny-sd2", "sd"), ("tiny-sdxl", "sdxl")]
)
def test_a_checkpoint_in_the_original_layout_loads_offline_and_renders_the_same(
    name: str, kind: str, tmp_path: Path, noise: Noise
) -> None:
    source = build_tiny_pipeline(SEED, SIZE, SIZE, vae="kl", name=name)
    checkpoint = tmp_path / f"{name}-model.safetensors"
    save_file(original_layout(source), str(checkpoint))
    assert model_kind(configs(str(checkpoint))[0]) == kind
    loaded = create_pipeline(*configs(str(checkpoint)))
    driver = SDXLPipeline if kind == "sdxl" else SD15Pipeline
    reference = driver(*configs(name), pipe=source)  # the very pipeline that was written
    cond = loaded.encode_prompt("abstract light")
    frames = loaded.generate_batch(noise(1), cond)
    expected = reference.generate_batch(noise(1), reference.encode_prompt("abstract light"))
    assert int(np.abs(frames.astype(int) - expected).max()) <= 1
    assert not loaded.is_untrained
    assert loaded.model_label == str(checkpoint)


def fake_checkpoint(path: Path, tensors: dict[str, tuple[int, ...]]) -> Path:
    """A checkpoint holding only the named tensors (zeros): enough to be told apart."""
    save_file({k: torch.zeros(shape) for k, shape in tensors.items()}, str(path))
    return path


UNET = {"model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3)}
SD1 = {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (8, 2)}
SD2 = {"cond_stage_model.model.token_embedding.weight": (8, 2)}
SDXL = {
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (8, 2),
    "conditioner.embedders.1.model.positional_embedding": (77, 2),
}


@pytest.mark.parametrize(
    ("tensors", "family"),
    [
        ({**UNET, **SD1}, "sd1"),
        ({**UNET, **SD2}, "sd2"),
        ({**UNET, **SD2, "v_pred": (0,)}, "sd2-v"),
        ({**UNET, **SDXL}, "sdxl"),
    ],
)
def test_real_families_are_told_apart_by_their_tensor_names(
    tensors: dict[str, tuple[int, ...]], family: str, tmp_path: Path
) -> None:
    detected = detect_family(fake_checkpoint(tmp_path / "model.safetensors", tensors))
    assert detected.family.name == family
    assert config_folder(detected.family) == CONFIGS / family


def test_sd2_v_prediction_is_read_from_the_weights_as_comfyui_does(tmp_path: Path) -> None:
    key = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"
    spread = torch.linspace(-1, 1, 16)
    save_file(
        {**{k: torch.zeros(s) for k, s in {**UNET, **SD2}.items()}, key: spread},
        str(tmp_path / "v.safetensors"),
    )
    assert detect_family(tmp_path / "v.safetensors").family.name == "sd2-v"
    save_file(
        {**{k: torch.zeros(s) for k, s in {**UNET, **SD2}.items()}, key: spread * 0.01},
        str(tmp_path / "eps.safetensors"),
    )
    assert detect_family(tmp_path / "eps.safetensors").family.name == "sd2"


@pytest.mark.parametrize(
    ("tensors", "says"),
    [
        ({"lora_unet_down_blocks_0.alpha": (1,)}, "no Stable Diffusion unet"),
        ({"model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3), **SD1}, "9 input"),
        ({**UNET, "conditioner.embedders.0.model.text_projection": (2, 2)}, "refiner"),
        (UNET, "none of the text encoders"),
    ],
)
def test_what_is_not_a_text_to_image_checkpoint_is_named(
    tensors: dict[str, tuple[int, ...]], says: str, tmp_path: Path
) -> None:
    checkpoint = fake_checkpoint(tmp_path / "odd-model.safetensors", tensors)
    with pytest.raises(ModelError, match=says) as caught:
        create_pipeline(*configs(str(checkpoint)))
    assert "odd-model.safetensors" in str(caught.value)


def test_a_corrupt_checkpoint_is_named(tmp_path: Path) -> None:
    for name in ("broken.safetensors", "broken.ckpt"):
        bad = tmp_path / name
        bad.write_bytes(b"\x00not a checkpoint" * 8)
        with pytest.raises(ModelError, match=re.escape(name)):
            create_pipeline(*configs(str(bad)))


def test_the_packaged_configs_are_the_published_architectures() -> None:
    """Parameter counts of the shipped configs (built without weights) against the published
    figures: SD 1.5's unet 859.52 M, SD 2.1's 865.91 M, SDXL's 2.567 B; CLIP ViT-L text 123.06 M,
    OpenCLIP ViT-H text (23 of 24 layers, as diffusers ships it) 340.39 M, bigG 694.66 M."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    published = {
        "sd1": (859_520_964, [123_060_480]),
        "sd2": (865_910_724, [340_387_840]),
        "sd2-v": (865_910_724, [340_387_840]),
        "sdxl": (2_567_463_684, [123_060_480, 694_659_840]),
    }
    for family, (unet_count, text_counts) in published.items():
        folder = CONFIGS / family
        assert (
            json.loads((folder / "model_index.json").read_text())["_class_name"]
            == FAMILIES[family].pipeline_class
        )
        with init_empty_weights():
            unet = UNet2DConditionModel.from_config(
                json.loads((folder / "unet" / "config.json").read_text())
            )
            encoders: list[torch.nn.Module] = [
                CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder")))
            ]
            if (folder / "text_encoder_2").is_dir():
                encoders.append(
                    CLIPTextModelWithProjection(
                        CLIPTextConfig.from_pretrained(str(folder / "text_encoder_2"))
                    )
                )
        assert count(unet) == unet_count, family
        assert [count(e) for e in encoders] == text_counts, family


def test_the_packaged_clip_tokenizer_gives_clips_ids() -> None:
    # the ids the hub's openai/clip-vit-large-patch14 tokenizer gives (its documentation's example)
    assert clip_tokenizer()("a photo of a cat").input_ids == [
        49406,
        320,
        1125,
        539,
        320,
        2368,
        49407,
    ]
    assert len(clip_tokenizer()) == 49408
    padded = clip_tokenizer("!")("a cat", padding="max_length", max_length=6).input_ids
    assert padded == [49406, 320, 2368, 49407, 0, 0]  # OpenCLIP pads with "!" (id 0)

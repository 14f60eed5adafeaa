"""The real loading paths (folders, files, hub ids, TAESD, LoRA) and the errors that name culprits."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderTiny, StableDiffusionPipeline
from transformers import CLIPTextConfig, CLIPTextModel

from engine.diffusion.loading import check_sd_architecture, resolve_model_source
from engine.diffusion.sd15 import SD15Pipeline
from engine.diffusion.tiny import build_tiny_components, build_tiny_pipeline
from engine.errors import ModelError
from tests.engine.diffusion.support import SEED, SIZE, save_random_lora, tiny_configs

Noise = Callable[..., torch.Tensor]


def load(model: str | Path, **diffusion: object) -> SD15Pipeline:
    pipeline = SD15Pipeline(*tiny_configs(model=str(model), **diffusion))
    pipeline.load_model()
    return pipeline


def test_a_saved_folder_loads_and_renders_the_same_frames(
    saved_tiny: Path, tiny: SD15Pipeline, noise: Noise
) -> None:
    loaded = load(saved_tiny)
    assert not loaded.is_untrained
    assert loaded.model_label == str(saved_tiny)
    embeds = loaded.encode_prompt("abstract light")
    torch.testing.assert_close(embeds, tiny.encode_prompt("abstract light"))
    np.testing.assert_array_equal(
        loaded.generate_batch(noise(1), embeds), tiny.generate_batch(noise(1), embeds)
    )


def test_missing_paths_are_named(tmp_path: Path) -> None:
    for missing in (tmp_path / "no-such-model", "./models/sd.safetensors", "~/gone.ckpt"):
        with pytest.raises(ModelError, match="not found") as caught:
            load(missing)
        assert str(missing) in str(caught.value)
        assert "--model tiny" in str(caught.value)


def test_a_corrupt_checkpoint_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00not a safetensors file" * 4)
    with pytest.raises(ModelError, match=re.escape("broken.safetensors")):
        load(bad)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ModelError, match=re.escape("notes.txt")):
        load(text)


def test_corrupt_weights_inside_a_folder_name_the_folder(saved_tiny: Path, tmp_path: Path) -> None:
    folder = tmp_path / "damaged"
    shutil.copytree(saved_tiny, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="damaged"):
        load(folder)


def test_wrong_architecture_folders_are_refused(saved_tiny: Path, tmp_path: Path) -> None:
    flux = tmp_path / "flux"
    flux.mkdir()
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ModelError, match="FluxPipeline") as caught:
        load(flux)
    assert str(flux) in str(caught.value)

    empty = tmp_path / "just-a-folder"
    empty.mkdir()
    with pytest.raises(ModelError, match=re.escape("model_index.json")):
        load(empty)

    scrambled = tmp_path / "scrambled"
    shutil.copytree(saved_tiny, scrambled)
    index = json.loads((scrambled / "model_index.json").read_text())
    index["unet"] = ["diffusers", "NoSuchUNetModel"]
    (scrambled / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelError, match="scrambled"):
        load(scrambled)

    garbled = tmp_path / "garbled"
    garbled.mkdir()
    (garbled / "model_index.json").write_text("{not json")
    with pytest.raises(ModelError, match="garbled"):
        load(garbled)


def test_mismatched_components_are_refused() -> None:
    components = build_tiny_components(0)
    components["text_encoder"] = CLIPTextModel(
        CLIPTextConfig(vocab_size=300, hidden_size=48, intermediate_size=64, num_hidden_layers=1)
    )
    pipe = StableDiffusionPipeline(**components, safety_checker=None, feature_extractor=None)
    with pytest.raises(ModelError, match="mismatched"):
        check_sd_architecture(pipe, "frankenstein")


@pytest.mark.usefixtures("offline")
def test_an_unknown_hub_id_offline_says_how_to_fix_it() -> None:
    assert resolve_model_source("acme/no-such-model").kind == "hub"
    with pytest.raises(ModelError, match="acme/no-such-model") as caught:
        load("acme/no-such-model")
    message = str(caught.value)
    assert "offline" in message
    assert "--model PATH" in message
    assert "--model tiny" in message


def test_taesd_replaces_a_full_vae_from_a_local_folder(tmp_path: Path, noise: Noise) -> None:
    kl_model = tmp_path / "kl-model"
    build_tiny_pipeline(SEED, SIZE, SIZE, vae="kl").save_pretrained(kl_model)
    taesd = tmp_path / "taesd"
    build_tiny_components(SEED)["vae"].save_pretrained(taesd)

    full = load(kl_model, use_tiny_vae=False)
    assert isinstance(full.pipe.vae, AutoencoderKL)
    swapped = load(kl_model, use_tiny_vae=True, tiny_vae=str(taesd))
    assert isinstance(swapped.pipe.vae, AutoencoderTiny)
    embeds = full.encode_prompt("x")
    for pipeline in (full, swapped):
        frames = pipeline.generate_batch(noise(1), embeds)
        assert frames.shape == (1, SIZE, SIZE, 4)
        assert frames[..., :3].std() > 5
        latents = pipeline.encode_image(frames)
        assert latents.shape == (1, 4, SIZE // 8, SIZE // 8)


@pytest.mark.usefixtures("offline")
def test_taesd_from_an_unreachable_hub_id_is_named(tmp_path: Path) -> None:
    kl_model = tmp_path / "kl-model"
    build_tiny_pipeline(SEED, SIZE, SIZE, vae="kl").save_pretrained(kl_model)
    with pytest.raises(ModelError, match="tiny vae 'acme/no-such-taesd'") as caught:
        load(kl_model, use_tiny_vae=True, tiny_vae="acme/no-such-taesd")
    assert "use_tiny_vae" in str(caught.value)


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA on the tiny unet's attention, saved the way Hyper-SD/LCM-LoRA ship."""
    return save_random_lora(tmp_path_factory.mktemp("lora"))


def test_a_lora_is_fused_at_load_and_leaves_no_adapters(
    lora_file: Path, tiny: SD15Pipeline, noise: Noise
) -> None:
    fused = load("tiny", lora=str(lora_file))
    assert not [name for name, _ in fused.pipe.unet.named_modules() if "lora" in name]
    embeds = tiny.encode_prompt("abstract light")
    plain = tiny.generate_batch(noise(1), embeds)
    assert np.abs(fused.generate_batch(noise(1), embeds).astype(int) - plain).max() > 0
    muted = load("tiny", lora=str(lora_file), lora_scale=0.0)
    np.testing.assert_array_equal(muted.generate_batch(noise(1), embeds), plain)


def test_a_missing_lora_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="lora path not found"):
        load("tiny", lora=str(tmp_path / "nope.safetensors"))

"""Model kinds are chosen by what the model is; folders and cached hub ids of each family load
offline; a plugin's kind is reachable; what no kind runs is a ModelError saying what it found."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.config import DiffusionConfig, InferenceConfig
from engine.diffusion import base
from engine.diffusion.base import create_pipeline, model_kind, register_model_kind
from engine.diffusion.identify import ModelInfo
from engine.diffusion.sd15 import SD15Pipeline
from engine.diffusion.sdxl import SDXLPipeline
from engine.diffusion.tiny import TINY_MODELS, build_tiny_pipeline
from engine.errors import ModelError
from tests.engine.diffusion.support import SEED, SIZE, tiny_configs

Noise = Callable[..., torch.Tensor]
KIND = {"tiny": "sd", "tiny-sd2": "sd", "tiny-sdxl": "sdxl"}


@pytest.fixture
def registry() -> Iterator[None]:
    """Kinds a test registers are gone after it."""
    kinds, detectors = dict(base.MODEL_KINDS), dict(base.MODEL_DETECTORS)
    yield
    base.MODEL_KINDS.clear()
    base.MODEL_KINDS.update(kinds)
    base.MODEL_DETECTORS.clear()
    base.MODEL_DETECTORS.update(detectors)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each tiny model written as a diffusers folder."""
    root = tmp_path_factory.mktemp("families")
    folders = {}
    for name in TINY_MODELS:
        folders[name] = root / name
        build_tiny_pipeline(SEED, SIZE, SIZE, name=name).save_pretrained(folders[name])
    return folders


def test_built_in_models_resolve_by_name_and_say_untrained() -> None:
    for name, kind_class in (
        ("tiny", SD15Pipeline),
        ("tiny-sd2", SD15Pipeline),
        ("tiny-sdxl", SDXLPipeline),
    ):
        assert model_kind(tiny_configs(model=name)[0]) == name
        pipeline = create_pipeline(*tiny_configs(model=name))
        assert type(pipeline) is kind_class
        assert pipeline.is_untrained
        assert "untrained" in pipeline.model_label
    sd2 = create_pipeline(*tiny_configs(model="tiny-sd2"))
    assert isinstance(sd2, SD15Pipeline)
    assert sd2.pipe.scheduler.config.prediction_type == "v_prediction"
    assert sd2.pipe.unet.config.use_linear_projection


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize("name", TINY_MODELS)
def test_a_folder_of_each_family_picks_its_kind_and_renders_the_same(
    name: str, saved: dict[str, Path], noise: Noise
) -> None:
    folder_configs = tiny_configs(model=str(saved[name]))
    assert model_kind(folder_configs[0]) == KIND[name]
    loaded = create_pipeline(*folder_configs)
    builtin = create_pipeline(*tiny_configs(model=name))
    frames = loaded.generate_batch(noise(1), loaded.encode_prompt("abstract light"))
    expected = builtin.generate_batch(noise(1), builtin.encode_prompt("abstract light"))
    np.testing.assert_array_equal(frames, expected)
    assert not loaded.is_untrained


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache in a temporary folder, the hub offline."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def cache_snapshot(cache: Path, repo: str, folder: Path) -> None:
    """Lay a model into the cache as the hub client does (refs/main -> snapshots/<commit>)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_a_cached_hub_id_of_each_family_loads_offline(
    name: str, saved: dict[str, Path], hub_cache: Path, noise: Noise
) -> None:
    repo = f"acme/{name}-cached"
    cache_snapshot(hub_cache, repo, saved[name])
    assert model_kind(tiny_configs(model=repo)[0]) == KIND[name]
    loaded = create_pipeline(*tiny_configs(model=repo))
    builtin = create_pipeline(*tiny_configs(model=name))
    np.testing.assert_array_equal(
        loaded.generate_batch(noise(2), loaded.encode_prompt("neon")),
        builtin.generate_batch(noise(2), builtin.encode_prompt("neon")),
    )


def test_an_uncached_hub_id_offline_names_it(hub_cache: Path) -> None:
    with pytest.raises(ModelError, match="acme/not-cached") as caught:
        create_pipeline(*tiny_configs(model="acme/not-cached"))
    assert "offline" in str(caught.value)


def test_what_no_kind_runs_is_named_with_what_was_found(tmp_path: Path) -> None:
    flux = tmp_path / "flux"
    flux.mkdir()
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ModelError, match="FluxPipeline") as caught:
        create_pipeline(*tiny_configs(model=str(flux)))
    assert str(flux) in str(caught.value)
    assert "sdxl" in str(caught.value)


@pytest.mark.usefixtures("registry")
def test_a_plugin_kind_is_reachable_by_name_and_by_its_detector(tmp_path: Path) -> None:
    made: list[str] = []

    def factory(diffusion: DiffusionConfig, inference: InferenceConfig) -> SD15Pipeline:
        made.append(diffusion.model)
        return SD15Pipeline(diffusion.model_copy(update={"model": "tiny"}), inference)

    def detect(info: ModelInfo) -> bool:
        return info.pipeline_class == "FluxPipeline"

    register_model_kind("flux", factory, detect=detect)
    register_model_kind("null-test", factory)
    flux = tmp_path / "flux"
    flux.mkdir()
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    assert model_kind(tiny_configs(model=str(flux))[0]) == "flux"
    assert model_kind(tiny_configs(model="null-test")[0]) == "null-test"
    create_pipeline(*tiny_configs(model=str(flux)))
    create_pipeline(*tiny_configs(model="null-test"))
    assert made == [str(flux), "null-test"]


def test_a_folder_of_the_other_family_is_refused_by_name(saved: dict[str, Path]) -> None:
    with pytest.raises(ModelError, match="StableDiffusionXLPipeline") as caught:
        SD15Pipeline(*tiny_configs(model=str(saved["tiny-sdxl"]))).load_model()
    assert str(saved["tiny-sdxl"]) in str(caught.value)
    with pytest.raises(ModelError, match="not a SDXL pipeline"):
        SDXLPipeline(*tiny_configs(model=str(saved["tiny"]))).load_model()


@pytest.mark.parametrize("name", ["tiny", "tiny-sdxl"])
def test_a_missing_tokenizer_is_named(name: str, saved: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "no-tokenizer"
    shutil.copytree(saved[name], folder)
    part = "tokenizer_2" if name == "tiny-sdxl" else "tokenizer"
    for file in (folder / part).iterdir():
        file.unlink()
    with pytest.raises(ModelError, match=f"{part}/ lacks the tokenizer") as caught:
        create_pipeline(*tiny_configs(model=str(folder))).load_model()
    assert str(folder) in str(caught.value)

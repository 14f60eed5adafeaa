"""Fixtures for the model tests: one tiny pipeline per session, at 64x64 to stay fast."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from engine.config import InferenceConfig
from engine.diffusion.sd15 import SD15Pipeline
from engine.diffusion.sdxl import SDXLPipeline
from engine.diffusion.tiny import build_tiny_pipeline
from tests.engine.diffusion.support import SEED, SIZE, tiny_configs


@pytest.fixture(scope="session")
def tiny_session() -> SD15Pipeline:
    pipeline = SD15Pipeline(*tiny_configs())
    pipeline.load_model()
    return pipeline


@pytest.fixture
def tiny(tiny_session: SD15Pipeline) -> Iterator[SD15Pipeline]:
    """The session's tiny pipeline; inference settings and the negative prompt a test changes
    are put back after it."""
    saved = tiny_session.inference_config.model_dump()
    yield tiny_session
    tiny_session.inference_config = InferenceConfig.model_validate(saved)
    tiny_session.set_negative_prompt("")


@pytest.fixture(scope="session")
def tiny_xl_session() -> SDXLPipeline:
    pipeline = SDXLPipeline(*tiny_configs(model="tiny-sdxl"))
    pipeline.load_model()
    return pipeline


@pytest.fixture
def tiny_xl(tiny_xl_session: SDXLPipeline) -> Iterator[SDXLPipeline]:
    """The session's tiny SDXL pipeline; inference settings and the negative prompt a test
    changes are put back after it."""
    saved = tiny_xl_session.inference_config.model_dump()
    yield tiny_xl_session
    tiny_xl_session.inference_config = InferenceConfig.model_validate(saved)
    tiny_xl_session.set_negative_prompt("")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub: what a machine without network sees (the ids the tests use are in no cache)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def noise() -> Callable[[int], torch.Tensor]:
    """Seeded unit noise of one 64x64 frame's latent shape."""

    def make(seed: int, batch: int = 1) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(batch, 4, SIZE // 8, SIZE // 8, generator=generator)

    return make


@pytest.fixture(scope="session")
def saved_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model written as a diffusers folder (the layout real checkpoints come in)."""
    folder = tmp_path_factory.mktemp("models") / "tiny-sd"
    build_tiny_pipeline(SEED, SIZE, SIZE).save_pretrained(folder)
    return folder

"""Shared settings of the model tests (importable, unlike conftest)."""

from __future__ import annotations

from engine.config import DiffusionConfig, InferenceConfig

SIZE = 64
SEED = 42


def tiny_configs(**diffusion: object) -> tuple[DiffusionConfig, InferenceConfig]:
    """The test configs: the tiny model (or ``model=...``) on the cpu at 64x64, one step."""
    settings: dict[str, object] = {"model": "tiny", "device": "cpu", "seed": SEED}
    settings.update(diffusion)
    return DiffusionConfig.model_validate(settings), InferenceConfig(height=SIZE, width=SIZE)

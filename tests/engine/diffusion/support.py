"""Shared settings of the model tests (importable, unlike conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from engine.config import DiffusionConfig, InferenceConfig
from engine.diffusion.tiny import build_tiny_pipeline

SIZE = 64
SEED = 42

# the GPU tests need the device they test: skipped where there is none (this project's CI)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def tiny_configs(**diffusion: object) -> tuple[DiffusionConfig, InferenceConfig]:
    """The test configs: the tiny model (or ``model=...``) on the cpu at 64x64, one step."""
    settings: dict[str, object] = {"model": "tiny", "device": "cpu", "seed": SEED}
    settings.update(diffusion)
    return DiffusionConfig.model_validate(settings), InferenceConfig(height=SIZE, width=SIZE)


def save_random_lora(folder: Path, name: str = "tiny") -> Path:
    """A random LoRA on the attention of built-in ``name``'s unet, saved the way accelerator
    LoRAs ship (Hyper-SD, LCM-LoRA, SDXL-Lightning): the ``.safetensors`` file."""
    from peft import LoraConfig, get_peft_model_state_dict

    pipe: Any = build_tiny_pipeline(SEED, SIZE, SIZE, name=name)
    torch.manual_seed(0)
    pipe.unet.add_adapter(
        LoraConfig(
            r=4,
            lora_alpha=4,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            init_lora_weights=False,
        )
    )
    type(pipe).save_lora_weights(
        folder, unet_lora_layers=get_peft_model_state_dict(pipe.unet), safe_serialization=True
    )
    return folder / "pytorch_lora_weights.safetensors"

"""The built-in tiny model: built offline from a seed, labelled untrained, frames with content."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from engine.diffusion.base import create_pipeline, model_kind
from engine.diffusion.sd15 import SD15Pipeline
from engine.diffusion.tiny import TINY_LABEL, build_tiny_components, build_tiny_tokenizer
from tests.engine.diffusion.support import tiny_configs


def test_tokenizer_spells_unknown_words_so_every_prompt_differs() -> None:
    tokenizer = build_tiny_tokenizer()
    known = tokenizer("abstract light").input_ids
    unknown_a = tokenizer("zorblax quiver").input_ids
    unknown_b = tokenizer("quiver zorblax").input_ids
    unk = tokenizer.convert_tokens_to_ids("<|unk|>")
    assert known[0] == tokenizer.bos_token_id
    assert known[-1] == tokenizer.eos_token_id
    assert len(known) == 4  # two whole words between the start and end tokens
    assert unk not in unknown_a
    assert unknown_a != unknown_b
    padded = tokenizer("x", padding="max_length", max_length=77, truncation=True).input_ids
    assert len(padded) == 77
    assert tokenizer.model_max_length == 77


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    first = build_tiny_components(7)["unet"].state_dict()
    again = build_tiny_components(7)["unet"].state_dict()
    other = build_tiny_components(8)["unet"].state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_building_leaves_the_global_random_stream_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_components(0)
    assert torch.equal(torch.rand(3), expected)


def test_labelled_untrained_everywhere(tiny: SD15Pipeline) -> None:
    assert tiny.is_untrained
    assert tiny.model_label == TINY_LABEL
    assert "untrained" in tiny.model_label
    assert model_kind(tiny.diffusion_config) == "tiny"
    assert create_pipeline(*tiny_configs()).is_untrained


def test_frames_have_texture_and_follow_latent_and_prompt(
    tiny: SD15Pipeline, noise: Callable[..., torch.Tensor]
) -> None:
    light, sky = tiny.encode_prompt(["abstract light", "deep blue midnight sky"]).chunk(2)
    base = tiny.generate_batch(noise(1), light)[0, ..., :3].astype(np.float64)
    other_latent = tiny.generate_batch(noise(2), light)[0, ..., :3].astype(np.float64)
    other_prompt = tiny.generate_batch(noise(1), sky)[0, ..., :3].astype(np.float64)
    assert base.std() > 20  # not a flat colour
    assert 60 < base.mean() < 200  # neither black nor blown out
    assert np.abs(base - other_latent).mean() > 10
    assert np.abs(base - other_prompt).mean() > 2

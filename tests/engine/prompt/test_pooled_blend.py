"""SDXL's conditioning through the chroma blend: token and pooled embeddings, same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import PromptConfig
from engine.diffusion.conditioning import TextConditioning
from engine.errors import RenderError
from engine.prompt.interpolator import PromptInterpolator
from tests.engine.synthetic import make_features, one_hot_chroma


def conditionings() -> tuple[TextConditioning, TextConditioning]:
    generator = torch.Generator().manual_seed(0)
    base = TextConditioning(
        torch.randn(1, 5, 6, generator=generator), torch.randn(1, 4, generator=generator)
    )
    chroma = TextConditioning(
        torch.randn(12, 5, 6, generator=generator), torch.randn(12, 4, generator=generator)
    )
    return base, chroma


def test_pooled_embeddings_are_blended_by_the_same_weights() -> None:
    base, chroma = conditionings()
    assert base.pooled is not None
    assert chroma.pooled is not None
    features = make_features(8, chroma=np.random.default_rng(1).random((12, 8)))
    interp = PromptInterpolator(PromptConfig(chroma_weight=0.4))
    out = interp.interpolate_prompts(features, base, chroma)
    weights = torch.from_numpy(interp.chroma_weights(features)).float()
    assert isinstance(out, TextConditioning)
    assert out.pooled is not None
    expected_embeds = 0.6 * base.embeds + 0.4 * torch.einsum("fk,ksh->fsh", weights, chroma.embeds)
    expected_pooled = 0.6 * base.pooled + 0.4 * weights @ chroma.pooled
    torch.testing.assert_close(out.embeds, expected_embeds)
    torch.testing.assert_close(out.pooled, expected_pooled)


def test_one_pitch_class_selects_its_pooled_prompt_live() -> None:
    base, chroma = conditionings()
    assert chroma.pooled is not None
    interp = PromptInterpolator(PromptConfig(chroma_weight=1.0))
    state = make_features(1, chroma=one_hot_chroma([5])).state_at_frame(0)
    out = interp.blend_for_state(state, base, chroma)
    assert isinstance(out, TextConditioning)
    assert out.pooled is not None
    torch.testing.assert_close(out.pooled, chroma.pooled[5:6])
    torch.testing.assert_close(out.embeds, chroma.embeds[5:6])


def test_pooled_on_one_side_only_is_refused() -> None:
    base, chroma = conditionings()
    weights = np.full((1, 12), 1 / 12)
    with pytest.raises(RenderError, match="pooled"):
        PromptInterpolator(PromptConfig()).blend(weights, TextConditioning(base.embeds), chroma)

"""Chroma-weighted prompt blending: weights follow the harmony, offline equals live."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import PromptConfig
from engine.errors import ControlError, RenderError
from engine.prompt.interpolator import PromptInterpolator, pitch_distribution
from tests.engine.synthetic import make_features, one_hot_chroma

SEQ, HIDDEN = 7, 16


def embeds(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    return torch.randn(1, SEQ, HIDDEN, generator=rng), torch.randn(12, SEQ, HIDDEN, generator=rng)


def interpolator(**fields: float) -> PromptInterpolator:
    return PromptInterpolator(PromptConfig.model_validate(fields))


def test_dominant_pitch_class_gets_the_largest_weight() -> None:
    rng = np.random.default_rng(1)
    chroma = rng.random((12, 60)) * 0.6
    chroma[7] = 1.0  # G dominates every frame
    weights = interpolator().chroma_weights(make_features(60, chroma=chroma))
    assert weights.shape == (60, 12)
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert (weights >= 0).all()
    assert (weights.argmax(axis=1) == 7).all()


def test_weights_move_with_the_smoothing_time_constant() -> None:
    smoothing = 0.8
    # C for 30 frames, then G for 30
    chroma = one_hot_chroma([0] * 30 + [7] * 30)
    weights = interpolator(smoothing=smoothing).chroma_weights(make_features(60, chroma=chroma))
    assert np.allclose(weights[:30, 0], 1.0)
    n = np.arange(1, 31)
    # an exponential approach: n frames after the switch, 1 - a^n of the way
    assert np.allclose(weights[30:, 7], 1.0 - smoothing**n)
    assert np.allclose(weights[30:, 0], smoothing**n)
    # the time constant -1/ln(a) (4.5 frames at 0.8) is where 1 - 1/e is crossed
    crossed = int(np.argmax(weights[30:, 7] >= 1 - np.exp(-1))) + 1
    assert crossed == int(np.ceil(-1 / np.log(smoothing)))


def test_no_smoothing_follows_each_frame() -> None:
    rng = np.random.default_rng(2)
    features = make_features(20, chroma=rng.random((12, 20)))
    weights = interpolator(smoothing=0.0).chroma_weights(features)
    for i in range(20):
        expected = pitch_distribution(features.chroma_cq[:, i], 2.0)
        assert expected is not None
        assert np.allclose(weights[i], expected)


def test_sharpness_is_the_power_on_chroma() -> None:
    column = np.array([1.0, 0.5] + [0.0] * 10)
    linear, squared = pitch_distribution(column, 1.0), pitch_distribution(column, 2.0)
    assert linear is not None
    assert squared is not None
    assert np.allclose(linear[:2], [2 / 3, 1 / 3])
    assert np.allclose(squared[:2], [0.8, 0.2])
    assert pitch_distribution(np.zeros(12), 2.0) is None


def test_silence_holds_the_previous_weights_and_starts_uniform() -> None:
    chroma = one_hot_chroma([0] * 10 + [4] * 10)
    chroma[:, :3] = 0.0  # silent start
    chroma[:, 14:17] = 0.0  # a silent gap
    weights = interpolator(smoothing=0.5).chroma_weights(make_features(20, chroma=chroma))
    assert np.allclose(weights[:3], 1 / 12)
    assert np.allclose(weights[3], np.eye(12)[0])  # the first sound starts afresh
    assert np.allclose(weights[14:17], weights[13])
    assert weights[17, 4] > weights[13, 4]


def test_blend_formula() -> None:
    base, chroma = embeds()
    rng = np.random.default_rng(3)
    features = make_features(12, chroma=rng.random((12, 12)))
    interp = interpolator(chroma_weight=0.3)
    out = interp.interpolate_prompts(features, base, chroma)
    assert out.shape == (12, SEQ, HIDDEN)
    assert out.dtype == torch.float32
    weights = torch.from_numpy(interp.chroma_weights(features)).float()
    expected = 0.7 * base + 0.3 * torch.einsum("fk,ksh->fsh", weights, chroma)
    assert torch.allclose(out, expected, atol=1e-5)
    only_base = interp.interpolate_prompts(features, base, chroma, chroma_weight=0.0)
    assert torch.allclose(only_base, base.expand(12, -1, -1))


def test_a_single_pitch_class_selects_its_prompt() -> None:
    base, chroma = embeds()
    features = make_features(5, chroma=one_hot_chroma([9] * 5))
    out = interpolator(chroma_weight=1.0).interpolate_prompts(features, base, chroma)
    assert torch.allclose(out, chroma[9].expand(5, -1, -1), atol=1e-6)


def test_one_prompts_embeddings_without_the_batch_axis_blend_the_same() -> None:
    # the seed passes base_embeds[0], a (seq, hidden) tensor
    base, chroma = embeds()
    features = make_features(6, chroma=np.random.default_rng(5).random((12, 6)))
    interp = interpolator(chroma_weight=0.5)
    expected = interp.interpolate_prompts(features, base, chroma)
    assert torch.equal(interp.interpolate_prompts(features, base[0], chroma), expected)
    state = features.state_at_frame(0)
    assert torch.allclose(interp.blend_for_state(state, base[0], chroma), expected[:1], atol=1e-6)


def test_offline_equals_live_frame_by_frame() -> None:
    base, chroma = embeds()
    rng = np.random.default_rng(4)
    raw = rng.random((12, 50)) ** 3
    raw[:, 20:25] = 0.0  # silence inside: held weights on both paths
    features = make_features(50, chroma=raw)
    interp = interpolator(smoothing=0.7, chroma_weight=0.4)
    offline = interp.interpolate_prompts(features, base, chroma)
    for _ in range(2):  # and again after reset(), from the same start
        live = torch.cat(
            [
                interp.blend_for_state(features.state_at_frame(i), base, chroma)
                for i in range(features.num_frames)
            ]
        )
        assert torch.allclose(offline, live, rtol=1e-6, atol=1e-6)
        interp.reset()


def test_live_smoothing_carries_over_frames_and_resets() -> None:
    interp = interpolator(smoothing=0.5)
    c, g = (
        make_features(1, chroma=one_hot_chroma([0])),
        make_features(1, chroma=one_hot_chroma([7])),
    )
    assert np.allclose(interp.weights_for_state(c.state_at_frame(0)), np.eye(12)[0])
    after = interp.weights_for_state(g.state_at_frame(0))
    assert after[0] == pytest.approx(0.5)
    assert after[7] == pytest.approx(0.5)
    # the offline form runs its own smoother and leaves the live one alone
    interp.chroma_weights(make_features(10))
    assert interp.weights_for_state(g.state_at_frame(0))[7] == pytest.approx(0.75)
    interp.reset()
    assert np.allclose(interp.weights_for_state(g.state_at_frame(0)), np.eye(12)[7])


def test_live_chroma_weight_override() -> None:
    base, chroma = embeds()
    state = make_features(1, chroma=one_hot_chroma([2])).state_at_frame(0)
    out = interpolator(chroma_weight=0.3).blend_for_state(state, base, chroma, chroma_weight=1.0)
    assert out.shape == (1, SEQ, HIDDEN)
    assert torch.allclose(out[0], chroma[2], atol=1e-6)


def test_output_dtype() -> None:
    base, chroma = embeds()
    interp = PromptInterpolator(PromptConfig(), dtype=torch.float64)
    out = interp.interpolate_prompts(make_features(4), base, chroma)
    assert out.dtype == torch.float64
    assert out.device.type == "cpu"


def test_bad_inputs_name_the_culprit() -> None:
    base, chroma = embeds()
    features = make_features(4)
    interp = interpolator()
    with pytest.raises(RenderError, match="base_embeds"):
        interp.interpolate_prompts(features, base.expand(2, -1, -1), chroma)
    with pytest.raises(RenderError, match="base_embeds"):
        interp.interpolate_prompts(features, base[0, 0], chroma)
    with pytest.raises(RenderError, match="chroma_embeds"):
        interp.interpolate_prompts(features, base, chroma[:11])
    with pytest.raises(RenderError, match="chroma_embeds"):
        interp.interpolate_prompts(features, base, torch.randn(12, SEQ, HIDDEN + 1))
    with pytest.raises(ControlError, match="chroma_weight"):
        interp.interpolate_prompts(features, base, chroma, chroma_weight=1.5)
    with pytest.raises(RenderError, match="weights"):
        interp.blend(np.ones(12), base, chroma)
    with pytest.raises(ControlError, match="sharpness"):
        PromptInterpolator(PromptConfig(), sharpness=0.0)

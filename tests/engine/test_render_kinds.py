"""Every model kind through the conductor, on its tiny model: a 2-second offline render gives
frames of the configured size; on SDXL the chroma blend reaches the picture only when on."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.config import PipelineConfig
from engine.diffusion.conditioning import TextConditioning
from engine.render import Conductor
from tests.engine.synthetic import make_features, one_hot_chroma

FPS = 8


def config(model: str, **overrides: object) -> PipelineConfig:
    return PipelineConfig().with_overrides(
        {
            "diffusion.model": model,
            "diffusion.device": "cpu",
            "inference.width": 80,
            "inference.height": 64,
            "inference.batch_size": 4,
            "audio.fps": FPS,
            **overrides,
        }
    )


@pytest.mark.parametrize("model", ["tiny", "tiny-sd2", "tiny-sdxl"])
def test_a_two_second_render_of_each_kind(model: str) -> None:
    conductor = Conductor.from_config(config(model))
    features = make_features(2 * FPS)
    frames = list(conductor.render_features(features))
    assert [f.index for f in frames] == list(range(2 * FPS))
    assert all(f.image.shape == (64, 80, 4) and f.image.dtype == np.uint8 for f in frames)
    moved = np.mean(
        [np.abs(a.image.astype(int) - b.image).mean() for a, b in itertools.pairwise(frames)]
    )
    assert moved > 0.5
    assert conductor.stream.base.is_untrained


def test_the_chroma_blend_reaches_sdxl_frames_only_when_on() -> None:
    # the same beats and energy, two different harmonies
    a_minor = make_features(4, chroma=one_hot_chroma([9] * 4), seed=1)
    d_major = make_features(4, chroma=one_hot_chroma([2] * 4), seed=1)

    def last_frames(weight: float) -> tuple[np.ndarray, np.ndarray]:
        conductor = Conductor.from_config(config("tiny-sdxl", **{"prompt.chroma_weight": weight}))
        request = conductor.plan(a_minor.state_at_frame(0))
        assert isinstance(request.prompt_embeds, TextConditioning)
        assert request.prompt_embeds.pooled is not None
        first = list(conductor.render_features(a_minor))[-1].image
        second = list(conductor.render_features(d_major))[-1].image
        return first, second

    on = last_frames(0.8)
    off = last_frames(0.0)
    np.testing.assert_array_equal(off[0], off[1])
    assert np.abs(on[0].astype(int) - on[1]).mean() > 1.0

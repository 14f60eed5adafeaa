"""`prompt.negative_prompt` and the live `/hamba/negative_prompt` control reach guidance through
the conductor, on SD and SDXL, and each change is encoded once."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import PipelineConfig
from engine.controls import ControlStore
from engine.diffusion.sd15 import LatentDiffusionPipeline
from engine.render import Conductor, controls_from_config
from tests.engine.synthetic import make_features


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl"])
def test_a_live_negative_prompt_changes_guided_frames_and_is_encoded_once(model: str) -> None:
    config = PipelineConfig().with_overrides(
        {
            "diffusion.model": model,
            "diffusion.device": "cpu",
            "inference.width": 64,
            "inference.height": 64,
            "inference.guidance_scale": 5.0,
            "stream.enable_temporal_coherence": False,
        }
    )
    store = ControlStore(controls_from_config(config))
    conductor = Conductor.from_config(config, store)
    base = conductor.stream.base
    assert isinstance(base, LatentDiffusionPipeline)
    state = make_features(4).state_at_frame(1)
    plain = conductor.render(state, 1).image
    encodes = base.negative_encodes
    store.set("negative_prompt", "dark smoke, blur")
    steered = [conductor.render(state, 1).image for _ in range(3)]
    assert base.negative_prompt == "dark smoke, blur"
    assert base.negative_encodes == encodes + 1  # one change, three frames, one encode
    assert np.abs(plain.astype(int) - steered[0]).max() > 3
    np.testing.assert_array_equal(steered[0], steered[2])


def test_the_configured_negative_prompt_is_used_from_the_first_frame() -> None:
    config = PipelineConfig().with_overrides(
        {
            "diffusion.model": "tiny",
            "diffusion.device": "cpu",
            "inference.width": 64,
            "inference.height": 64,
            "inference.guidance_scale": 5.0,
            "prompt.negative_prompt": "grey fog",
        }
    )
    conductor = Conductor.from_config(config)
    conductor.render(make_features(2).state_at_frame(0), 0)
    assert conductor.stream.base.negative_prompt == "grey fog"

"""The streaming wrapper on the SDXL kind (tiny-sdxl): each feature changes the frames when on
and leaves them alone when off; the prompt cache and the stream batch carry pooled embeddings."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from engine.diffusion.conditioning import TextConditioning
from engine.diffusion.sdxl import SDXLPipeline
from tests.engine.diffusion.test_sd15 import unet_batches
from tests.engine.diffusion.test_stream import mean_step, run, stream

Noise = Callable[..., torch.Tensor]


def test_coherence_smooths_sdxl_frames_and_only_when_on(
    tiny_xl: SDXLPipeline, noise: Noise
) -> None:
    latents = [noise(100 + i) for i in range(6)]
    off = run(stream(tiny_xl), latents)
    on = run(stream(tiny_xl, enable_temporal_coherence=True, temporal_blend_ratio=0.6), latents)
    assert mean_step(on) < 0.8 * mean_step(off)
    np.testing.assert_array_equal(on[0], off[0])


def test_the_similarity_filter_skips_sdxl_repeats_and_only_when_on(
    tiny_xl: SDXLPipeline, noise: Noise
) -> None:
    on = stream(tiny_xl, enable_similarity_filter=True, similarity_max_skip=5)
    off = stream(tiny_xl)
    for wrapper in (on, off):
        run(wrapper, [noise(1)] * 4)
    assert on.frames_skipped == 3
    assert on.frames_generated == 1
    assert off.frames_skipped == 0
    assert off.frames_generated == 4
    # a new prompt with the same latent is new input: the pooled embeddings are compared too
    cond = on.encode_prompt("abstract light")
    assert isinstance(cond, TextConditioning)
    assert cond.pooled is not None
    pooled_only = TextConditioning(cond.embeds, -cond.pooled)
    on.generate_frame_with_coherence(noise(1), pooled_only, 0.0)
    assert not on.last_skipped


def test_img2img_feedback_on_sdxl_follows_the_previous_frame_only_when_on(
    tiny_xl: SDXLPipeline, noise: Noise
) -> None:
    fed = run(stream(tiny_xl, img2img_feedback=True, feedback_strength=0.3), [noise(1), noise(2)])
    plain = run(stream(tiny_xl), [noise(1), noise(2)])
    fresh = run(stream(tiny_xl), [noise(2)])[0]
    np.testing.assert_array_equal(plain[1], fresh)  # off: frame 2 ignores frame 1
    gap_fed = np.abs(fed[1].astype(float) - fed[0]).mean()
    gap_plain = np.abs(plain[1].astype(float) - plain[0]).mean()
    assert gap_fed < gap_plain / 2  # on: frame 2 stays near frame 1


def test_a_pooled_prompt_is_encoded_once_and_stream_batch_runs_one_call(
    tiny_xl: SDXLPipeline, noise: Noise
) -> None:
    wrapper = stream(tiny_xl, use_stream_batch=True)
    first = wrapper.encode_prompt("abstract light")
    assert wrapper.encode_prompt("abstract light") is first
    assert wrapper.encode_count == 1
    tiny_xl.inference_config.num_inference_steps = 2
    run(wrapper, [noise(1)])  # fills the pipeline
    with unet_batches(tiny_xl) as batches:
        frames = run(wrapper, [noise(2), noise(3)])
    assert batches == [2, 2]  # two latents in flight, one unet call per frame
    assert all(f.shape[-1] == 4 for f in frames)

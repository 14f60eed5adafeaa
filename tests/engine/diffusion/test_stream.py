"""The streaming wrapper on the tiny model: cache, coherence, similarity filter, feedback, batch."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
import torch

from engine.config import StreamConfig
from engine.diffusion.sd15 import LatentDiffusionPipeline, SD15Pipeline
from engine.diffusion.stream import StreamDiffusionPipeline
from engine.errors import ConfigError, RenderError
from tests.engine.diffusion.support import SIZE
from tests.engine.diffusion.test_sd15 import diff, unet_batches

Noise = Callable[..., torch.Tensor]


def stream(base: LatentDiffusionPipeline, **settings: object) -> StreamDiffusionPipeline:
    defaults: dict[str, object] = {
        "enable_temporal_coherence": False,
        "enable_similarity_filter": False,
    }
    defaults.update(settings)
    return StreamDiffusionPipeline(base, StreamConfig.model_validate(defaults), seed=3)


def run(
    wrapper: StreamDiffusionPipeline, latents: list[torch.Tensor], energy: float = 0.0
) -> list[np.ndarray]:
    embeds = wrapper.encode_prompt("abstract light")
    return [wrapper.generate_frame_with_coherence(z, embeds, energy) for z in latents]


def mean_step(frames: list[np.ndarray]) -> float:
    return float(
        np.mean([np.abs(a.astype(float) - b).mean() for a, b in itertools.pairwise(frames)])
    )


def test_a_frame_is_rgba_uint8(tiny: SD15Pipeline, noise: Noise) -> None:
    wrapper = stream(tiny)
    frame = run(wrapper, [noise(1)])[0]
    assert frame.shape == (SIZE, SIZE, 4)
    assert frame.dtype == np.uint8
    assert frame.flags.c_contiguous
    assert (frame[..., 3] == 255).all()
    assert wrapper.get_latent_shape() == (1, 4, SIZE // 8, SIZE // 8)
    assert wrapper.frames_generated == 1
    assert not wrapper.last_skipped


def test_same_seed_same_frames(tiny: SD15Pipeline, noise: Noise) -> None:
    latents = [noise(i) for i in range(4)] + [noise(3)] * 4
    settings = {"enable_temporal_coherence": True, "enable_similarity_filter": True}
    first = stream(tiny, **settings)
    second = stream(tiny, **settings)
    frames_a, frames_b = run(first, latents, 0.4), run(second, latents, 0.4)
    for a, b in zip(frames_a, frames_b, strict=True):
        np.testing.assert_array_equal(a, b)
    assert first.frames_skipped == second.frames_skipped


def test_coherence_smooths_independent_noise(tiny: SD15Pipeline, noise: Noise) -> None:
    latents = [noise(100 + i) for i in range(8)]
    off = run(stream(tiny), latents)
    on = run(stream(tiny, enable_temporal_coherence=True), latents)
    strong = run(stream(tiny, enable_temporal_coherence=True, temporal_blend_ratio=0.7), latents)
    assert mean_step(on) < mean_step(off)
    assert mean_step(strong) < mean_step(on)
    np.testing.assert_array_equal(on[0], off[0])  # nothing to blend with yet


def test_loud_music_blends_less(tiny: SD15Pipeline, noise: Noise) -> None:
    latents = [noise(200 + i) for i in range(5)]
    off = run(stream(tiny), latents, energy=1.0)
    settings = {"enable_temporal_coherence": True, "temporal_blend_ratio": 0.7}
    full = run(stream(tiny, **settings), latents, energy=1.0)
    half = run(stream(tiny, **settings), latents, energy=0.5)
    quiet = run(stream(tiny, **settings), latents, energy=0.0)
    for a, b in zip(full, off, strict=True):
        np.testing.assert_array_equal(a, b)  # energy 1: no blending at all
    assert mean_step(quiet) < mean_step(half) < mean_step(full)


def test_similarity_filter_skips_identical_inputs(tiny: SD15Pipeline, noise: Noise) -> None:
    wrapper = stream(tiny, enable_similarity_filter=True, similarity_max_skip=3)
    embeds = wrapper.encode_prompt("abstract light")
    previous = wrapper.generate_frame_with_coherence(noise(1), embeds, 0.0)
    skipped = []
    for _ in range(8):
        frame = wrapper.generate_frame_with_coherence(noise(1), embeds, 0.0)
        skipped.append(wrapper.last_skipped)
        # a skipped call re-publishes the previous frame itself
        assert (frame is previous) == wrapper.last_skipped
        previous = frame
    # identical at energy 0: skipped every time the cap allows
    assert skipped == [True, True, True, False, True, True, True, False]
    assert wrapper.frames_skipped == 6
    assert wrapper.frames_generated == 3


def test_similarity_filter_never_skips_at_full_energy_or_on_new_input(
    tiny: SD15Pipeline, noise: Noise
) -> None:
    wrapper = stream(tiny, enable_similarity_filter=True, similarity_max_skip=100)
    run(wrapper, [noise(1)] * 20, energy=1.0)
    assert wrapper.frames_skipped == 0
    run(wrapper, [noise(50 + i) for i in range(10)], energy=0.0)
    assert wrapper.frames_skipped == 0  # independent noises are far from similar
    other_prompt = wrapper.encode_prompt("deep blue midnight sky")
    wrapper.generate_frame_with_coherence(noise(59), other_prompt, 0.0)
    assert not wrapper.last_skipped  # same latent, new prompt: not a near-identical input


def test_a_prompt_is_encoded_once(tiny: SD15Pipeline) -> None:
    wrapper = stream(tiny)
    calls: list[int] = []
    handle = tiny.pipe.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        for _ in range(20):
            for prompt in ("a", "b", "a", "c"):
                wrapper.encode_prompt(prompt)
    finally:
        handle.remove()
    assert len(calls) == 3
    assert wrapper.encode_count == 3
    assert wrapper.prompt_cache_hits == 77
    assert wrapper.prompt_cache_misses == 3
    wrapper.update_settings(prompt_cache_size=1)  # keeps only the most recent ("c")
    wrapper.encode_prompt("c")
    wrapper.encode_prompt("a")
    assert wrapper.encode_count == 4


def test_stream_batch_runs_one_unet_call_per_frame(tiny: SD15Pipeline, noise: Noise) -> None:
    tiny.inference_config.num_inference_steps = 3
    wrapper = stream(tiny, use_stream_batch=True)
    embeds = wrapper.encode_prompt("abstract light")
    latents = [noise(300 + i) for i in range(6)]
    with unet_batches(tiny) as batches:
        frames = [wrapper.generate_frame_with_coherence(z, embeds, 0.0) for z in latents]
    # the first call fills the pipeline (two single steps), then one batched call per frame
    assert batches == [1, 1, 3, 3, 3, 3, 3, 3]
    assert all(f.shape == (SIZE, SIZE, 4) and f.dtype == np.uint8 for f in frames)
    sequential = [tiny.generate_batch(z, embeds)[0] for z in latents]
    assert diff(frames[0], sequential[0]) == 0  # the first frame is already complete
    # later frames come two calls late, each the full three-step render of its latent
    for k in range(2, 6):
        assert diff(frames[k], sequential[k - 2]) <= 1


def test_sequential_steps_without_stream_batch(tiny: SD15Pipeline, noise: Noise) -> None:
    tiny.inference_config.num_inference_steps = 2
    wrapper = stream(tiny, use_stream_batch=False)
    with unet_batches(tiny) as batches:
        run(wrapper, [noise(1), noise(2)])
    assert batches == [1, 1, 1, 1]


def test_img2img_feedback_changes_the_output(tiny: SD15Pipeline, noise: Noise) -> None:
    latents = [noise(400 + i) for i in range(4)]
    plain = run(stream(tiny), latents)
    fed = run(stream(tiny, img2img_feedback=True, feedback_strength=0.5), latents)
    np.testing.assert_array_equal(fed[0], plain[0])  # nothing to feed back yet
    assert all(diff(a, b) > 0 for a, b in zip(fed[1:], plain[1:], strict=True))
    assert mean_step(fed) < mean_step(plain)


def test_music_drives_the_feedback_strength(tiny: SD15Pipeline, noise: Noise) -> None:
    wrapper = stream(tiny, img2img_feedback=True, feedback_strength=0.9)
    embeds = wrapper.encode_prompt("abstract light")
    first = wrapper.generate_frame_with_coherence(noise(1), embeds, 0.0)
    held = wrapper.generate_frame_with_coherence(noise(2), embeds, 0.0, strength=0.02)
    loose = wrapper.generate_frame_with_coherence(noise(3), embeds, 0.0)
    assert np.abs(held.astype(float) - first).mean() < np.abs(loose.astype(float) - held).mean()
    with pytest.raises(RenderError, match="strength"):
        wrapper.generate_frame_with_coherence(noise(4), embeds, 0.0, strength=1.5)


def test_settings_are_validated_and_apply_at_the_next_frame(
    tiny: SD15Pipeline, noise: Noise
) -> None:
    wrapper = stream(tiny)
    with pytest.raises(ConfigError, match="temporal_blend_ratio"):
        wrapper.update_settings(temporal_blend_ratio=2.0)
    with pytest.raises(ConfigError, match="wobble"):
        wrapper.update_settings(wobble=1)
    assert wrapper.stream_config.temporal_blend_ratio == 0.3  # unchanged after a bad update
    run(wrapper, [noise(1)])
    wrapper.update_settings(enable_similarity_filter=True)
    run(wrapper, [noise(1)])
    assert wrapper.last_skipped


def test_reset_forgets_the_previous_frame(tiny: SD15Pipeline, noise: Noise) -> None:
    wrapper = stream(tiny, enable_temporal_coherence=True)
    fresh = run(stream(tiny, enable_temporal_coherence=True), [noise(2)])[0]
    run(wrapper, [noise(1)])
    wrapper.reset()
    np.testing.assert_array_equal(run(wrapper, [noise(2)])[0], fresh)


def test_bad_inputs_are_named(tiny: SD15Pipeline, noise: Noise) -> None:
    wrapper = stream(tiny)
    embeds = wrapper.encode_prompt("x")
    with pytest.raises(RenderError, match="latent"):
        wrapper.generate_frame_with_coherence(noise(1, batch=2), embeds, 0.0)
    with pytest.raises(RenderError, match="music_energy"):
        wrapper.generate_frame_with_coherence(noise(1), embeds, float("nan"))


def test_a_new_frame_size_starts_afresh(tiny: SD15Pipeline, noise: Noise) -> None:
    wrapper = stream(tiny, enable_temporal_coherence=True, img2img_feedback=True)
    run(wrapper, [noise(1), noise(2)])
    tiny.inference_config.height = SIZE * 2
    bigger = torch.randn(1, 4, SIZE // 4, SIZE // 8, generator=torch.Generator().manual_seed(1))
    frame = wrapper.generate_frame_with_coherence(bigger, wrapper.encode_prompt("x"), 0.0)
    assert frame.shape == (SIZE * 2, SIZE, 4)


def test_similarity_draw_is_a_function_of_the_frame_index(tiny: SD15Pipeline, noise: Noise) -> None:
    # a chunk of a split song starts cold: a frame's skip must not depend on the draws before it
    wrapper = stream(
        tiny, enable_similarity_filter=True, similarity_threshold=0.98, similarity_max_skip=100
    )
    embeds = wrapper.encode_prompt("abstract light")
    first = noise(1)
    probe = first + 0.1425 * noise(2)  # cosine about 0.99: a skip chance of about a half

    def skipped(index: int) -> bool:
        wrapper.reset()
        wrapper.generate_frame_with_coherence(first, embeds, 0.0, frame_index=0)
        wrapper.generate_frame_with_coherence(probe, embeds, 0.0, frame_index=index)
        return wrapper.last_skipped

    forward = [skipped(i) for i in range(1, 25)]
    backward = [skipped(i) for i in reversed(range(1, 25))][::-1]
    assert forward == backward
    assert 0 < sum(forward) < len(forward)  # each index its own draw, not the stream's first

"""The conductor: one code path from music states and controls to frames."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engine.config import PipelineConfig
from engine.controls import ControlStore
from engine.diffusion.base import create_pipeline
from engine.diffusion.stream import StreamDiffusionPipeline
from engine.errors import RenderError
from engine.render import Conductor, controls_from_config
from tests.bridge.outputs.patterns import psnr
from tests.engine.synthetic import make_features


@pytest.fixture(scope="module")
def config() -> PipelineConfig:
    return PipelineConfig().with_overrides(
        {
            "diffusion.model": "tiny",
            "inference.width": 64,
            "inference.height": 64,
            "inference.batch_size": 4,
            "audio.fps": 12,
        }
    )


def make_conductor(config: PipelineConfig, store: ControlStore | None = None) -> Conductor:
    base = create_pipeline(config.diffusion, config.inference)
    return Conductor(StreamDiffusionPipeline(base, config.stream), config, store)


def test_offline_render_frames_in_order(config: PipelineConfig) -> None:
    features = make_features(num_frames=10)
    frames = list(make_conductor(config).render_features(features))
    assert [f.index for f in frames] == list(range(10))
    assert all(f.image.shape == (64, 64, 4) and f.image.dtype == np.uint8 for f in frames)
    assert frames[3].time == pytest.approx(3 / features.fps)
    # the music moves the picture
    assert (
        np.mean(
            [np.abs(a.image.astype(int) - b.image).mean() for a, b in itertools.pairwise(frames)]
        )
        > 0.5
    )


def test_batched_equals_frame_by_frame(config: PipelineConfig) -> None:
    features = make_features(num_frames=8)
    conductor = make_conductor(config)
    batched = [f.image.astype(int) for f in conductor.render_features(features, batch_size=4)]
    single = [f.image.astype(int) for f in conductor.render_features(features, batch_size=1)]
    for a, b in zip(batched, single, strict=True):
        # same maths; only float summation order may differ between batch sizes
        assert np.abs(a - b).max() <= 2


def test_same_seed_same_frames_other_seed_other_frames(config: PipelineConfig) -> None:
    features = make_features(num_frames=6)
    first = [f.image for f in make_conductor(config).render_features(features)]
    again = [f.image for f in make_conductor(config).render_features(features)]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    store = ControlStore(controls_from_config(config).model_copy(update={"seed": 7}))
    other = [f.image for f in make_conductor(config, store).render_features(features)]
    assert np.abs(first[-1].astype(int) - other[-1]).mean() > 1.0


def test_controls_apply_between_frames(config: PipelineConfig) -> None:
    features = make_features(num_frames=6)
    store = ControlStore(controls_from_config(config))
    conductor = make_conductor(config, store)
    state = features.state_at_frame(2)
    request = conductor.plan(state, 2)
    store.set("prompt", "a completely different prompt")
    assert (
        request.controls.prompt != "a completely different prompt"
    )  # the planned frame keeps its snapshot
    before = conductor.execute(request).image
    conductor.reset()
    after = conductor.render(state, 2).image
    assert np.abs(before.astype(int) - after).mean() > 0.5


def test_pause_holds_the_picture_while_indices_advance(config: PipelineConfig) -> None:
    features = make_features(num_frames=6)
    store = ControlStore(controls_from_config(config))
    conductor = make_conductor(config, store)
    shown = conductor.render(features.state_at_frame(0), 0)
    store.set("pause", True)
    held = [conductor.render(features.state_at_frame(i), i) for i in range(1, 4)]
    assert [f.index for f in held] == [1, 2, 3]
    for frame in held:
        np.testing.assert_array_equal(frame.image, shown.image)
    assert conductor.frames_held == 3
    store.set("pause", False)
    assert not np.array_equal(conductor.render(features.state_at_frame(4), 4).image, shown.image)


def test_reactivity_zero_freezes_the_latent(config: PipelineConfig) -> None:
    features = make_features(num_frames=6)
    store = ControlStore(controls_from_config(config).model_copy(update={"reactivity": 0.0}))
    conductor = make_conductor(config, store)
    latents = [conductor.plan(features.state_at_frame(i), i).latent for i in range(6)]
    for latent in latents[1:]:
        assert np.allclose(latent.numpy(), latents[0].numpy())
    assert all(conductor.plan(features.state_at_frame(i), i).energy == 0.0 for i in range(3))


def test_prompt_encoded_once_however_often_used(config: PipelineConfig) -> None:
    conductor = make_conductor(config)
    features = make_features(num_frames=8)
    list(conductor.render_features(features))
    encoded = conductor.stream.encode_count
    list(conductor.render_features(features))
    assert conductor.stream.encode_count == encoded == 13  # the base prompt and 12 chroma prompts


def test_preset_change_sets_steps_live(config: PipelineConfig) -> None:
    store = ControlStore(controls_from_config(config))
    conductor = make_conductor(config, store)
    features = make_features(num_frames=4)
    conductor.render(features.state_at_frame(0), 0)
    assert conductor.stream.base.inference_config.num_inference_steps == 1
    store.set("preset", "quality")
    frame = conductor.render(features.state_at_frame(1), 1)
    assert conductor.stream.base.inference_config.num_inference_steps == 4
    assert conductor.stream.stream_config.temporal_blend_ratio == store.values.blend == 0.2
    assert frame.image.shape == (64, 64, 4)
    store.set("preset", "fast")
    conductor.render(features.state_at_frame(2), 2)
    assert conductor.stream.base.inference_config.num_inference_steps == 1
    assert conductor.stream.stream_config.enable_similarity_filter


def test_batched_feedback_uses_each_frames_music_driven_strength(config: PipelineConfig) -> None:
    feedback = config.with_overrides({"stream.img2img_feedback": True})
    features = make_features(num_frames=8)
    conductor = make_conductor(feedback)
    batched = [f.image for f in conductor.render_features(features, batch_size=4)]
    single = [f.image for f in conductor.render_features(features, batch_size=1)]
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_array_equal(a, b)  # feedback runs frame by frame either way


def test_a_span_of_the_whole_song_is_the_whole_render(config: PipelineConfig) -> None:
    features = make_features(num_frames=10)
    conductor = make_conductor(config)
    whole = [f.image for f in conductor.render_features(features)]
    span = list(conductor.render_span(features, 0, 10))
    assert [f.index for f in span] == list(range(10))
    for a, b in zip(whole, [f.image for f in span], strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_span_brings_the_chroma_smoothing_up_to_its_start_exactly(
    config: PipelineConfig,
) -> None:
    # with no model state carried between frames, a cold span is the whole render's frames
    stateless = config.with_overrides({"stream.enable_temporal_coherence": False})
    features = make_features(num_frames=24)
    conductor = make_conductor(stateless)
    whole = [f.image for f in conductor.render_features(features)]
    counted: list[int] = []
    span = list(conductor.render_span(features, 16, 24, progress=counted.append))
    assert [f.index for f in span] == list(range(16, 24))
    assert sum(counted) == 8
    for frame in span:
        np.testing.assert_array_equal(frame.image, whole[frame.index])


def test_a_warmup_hides_the_seam_of_a_span(config: PipelineConfig) -> None:
    features = make_features(num_frames=40, energy=np.zeros(40))  # energy 0: blending is strongest
    # a half blend: the tiny model's smooth preview decoder hides a cold start at the default 0.3
    conductor = make_conductor(config.with_overrides({"stream.temporal_blend_ratio": 0.5}))
    whole = [f.image for f in conductor.render_features(features)]
    # frame 30 falls mid-beat (a beat every 12 frames), where the latent moves fastest
    cold = list(conductor.render_span(features, 30, 40))
    warm = list(conductor.render_span(features, 30, 40, warmup_from=18))
    assert [f.index for f in warm] == list(range(30, 40))
    assert min(psnr(f.image, whole[f.index]) for f in cold) < 40  # a cold start shows
    assert min(psnr(f.image, whole[f.index]) for f in warm) >= 40


def test_a_span_outside_the_song_is_refused(config: PipelineConfig) -> None:
    features = make_features(num_frames=10)
    with pytest.raises(RenderError, match="warmup_from"):
        list(make_conductor(config).render_span(features, 4, 12))
    with pytest.raises(RenderError, match="warmup_from"):
        list(make_conductor(config).render_span(features, 4, 8, warmup_from=6))

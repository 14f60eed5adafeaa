"""The measuring models (``null``, ``null-fixed``): registered by name, real frames, the real
stream and conductor paths on top, a fixed render time that runs off the Python thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from engine.config import DiffusionConfig, InferenceConfig, PipelineConfig, StreamConfig
from engine.diffusion import base as diffusion_base
from engine.diffusion.base import create_pipeline, model_kind, register_model_kind
from engine.diffusion.host import NonFiniteFrameError
from engine.diffusion.null import NULL_HIDDEN, NullPipeline
from engine.diffusion.stream import StreamDiffusionPipeline
from engine.render import Conductor
from tests.engine.synthetic import make_features

DEVICES = pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ),
    ],
)


def null(
    size: int = 64, *, render_ms: float = 0.0, steps: int = 1, device: str = "cpu"
) -> NullPipeline:
    return NullPipeline(
        DiffusionConfig(model="null", device=device),
        InferenceConfig(height=size, width=size, num_inference_steps=steps),
        render_ms=render_ms,
    )


def noise(seed: int, size: int = 64) -> torch.Tensor:
    return torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(seed))


def test_a_registered_model_name_picks_its_own_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    assert model_kind(DiffusionConfig(model="null")) == "null"
    assert model_kind(DiffusionConfig(model="null-fixed")) == "null-fixed"
    assert model_kind(DiffusionConfig(model="tiny")) == "tiny"
    monkeypatch.setattr(diffusion_base, "MODEL_KINDS", dict(diffusion_base.MODEL_KINDS))
    register_model_kind("mine", lambda d, i: null())
    assert model_kind(DiffusionConfig(model="mine")) == "mine"
    fixed = create_pipeline(
        DiffusionConfig(model="null-fixed", null_render_ms=7.5), InferenceConfig()
    )
    assert isinstance(fixed, NullPipeline)
    assert fixed.render_ms == 7.5
    assert fixed.is_untrained
    assert "measuring tool" in fixed.model_label


@DEVICES
def test_frames_are_real_frames_that_follow_the_latent(device: str) -> None:
    """On the cpu the frames are written into the host ring; on CUDA they are made on the
    device and come back through the pinned ring, as a real model's do."""
    model = null(96, device=device)
    embeds = model.encode_prompt("anything")
    assert embeds.shape == (1, 77, NULL_HIDDEN)
    first = model.render(noise(1, 96).to(device), embeds).frames
    assert first.shape == (1, 96, 96, 4)
    assert first.dtype == np.uint8
    assert first.flags.c_contiguous
    assert (first[..., 3] == 255).all()
    kept = first.copy()
    again = model.render(noise(1, 96).to(device), embeds).frames
    other = model.render((noise(2, 96) * 3).to(device), embeds).frames
    np.testing.assert_array_equal(again, kept)
    assert not np.array_equal(other, kept)  # the tinted band follows the latent
    assert len(np.unique(first[0, 40:, :, 2])) > 100  # texture, not a flat colour
    np.testing.assert_array_equal(first, kept)  # an earlier frame is never overwritten


@DEVICES
def test_nan_in_the_model_is_never_a_frame(device: str) -> None:
    model = null(device=device)
    embeds = model.encode_prompt("x")
    pending = model.launch(torch.full((1, 4, 8, 8), float("nan"), device=device), embeds)
    with pytest.raises(NonFiniteFrameError, match="NaN"):
        pending.wait()
    with pytest.raises(NonFiniteFrameError):
        pending.frames.image()  # asking again gives the same answer
    assert model.render(noise(0).to(device), embeds).frames.shape == (1, 64, 64, 4)


def test_fixed_render_time_runs_off_the_python_thread() -> None:
    """Launch returns at once; the frame is ready a render time later (frames queue as on one
    CUDA stream), and meanwhile another thread runs: nothing holds the GIL."""
    model = null(render_ms=60.0)
    embeds = model.encode_prompt("x")
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    worker = threading.Thread(target=count)
    started = time.perf_counter()
    first = model.launch(noise(1), embeds)
    second = model.launch(noise(2), embeds)
    assert not first.frames.ready()
    assert not second.frames.ready()
    worker.start()
    first.wait()
    assert time.perf_counter() - started >= 0.060
    assert not second.frames.ready()  # queued behind the first
    second.wait()
    stop.set()
    worker.join()
    assert time.perf_counter() - started >= 0.120
    assert first.frames.ready()
    assert second.frames.ready()
    assert ticks > 1000  # the other thread ran while the loop waited


def test_stream_wrapper_runs_on_it() -> None:
    """Coherence, the prompt cache, the similarity filter's identity and img2img feedback."""
    model = null()
    stream = StreamDiffusionPipeline(
        model,
        StreamConfig(enable_similarity_filter=True, similarity_threshold=0.5),
    )
    embeds = stream.encode_prompt("a")
    assert stream.encode_prompt("a") is embeds
    assert stream.encode_count == 1
    frame = stream.generate_frame_with_coherence(noise(1), embeds, 0.0)
    again = stream.generate_frame_with_coherence(noise(1), embeds, 0.0)
    assert again is frame
    assert stream.frames_skipped == 1
    feedback = StreamDiffusionPipeline(model, StreamConfig(img2img_feedback=True))
    one = feedback.generate_frame_with_coherence(noise(1), embeds, 0.5).copy()
    two = feedback.generate_frame_with_coherence(noise(5) * 4, embeds, 0.5)
    plain = StreamDiffusionPipeline(model, StreamConfig(enable_temporal_coherence=False))
    alone = plain.generate_frame_with_coherence(noise(5) * 4, embeds, 0.5)
    assert not np.array_equal(two, alone)
    assert not np.array_equal(one, alone)


def test_stream_batch_on_it_renders_one_frame_per_call() -> None:
    model = null(steps=3)
    stream = StreamDiffusionPipeline(model, StreamConfig(use_stream_batch=True))
    embeds = stream.encode_prompt("a")
    frames = [stream.generate_frame_with_coherence(noise(i), embeds, 0.5) for i in range(4)]
    assert all(f.shape == (64, 64, 4) for f in frames)
    assert model.frames_launched == 4  # one decode per frame


def test_conductor_launch_then_wait_in_order() -> None:
    config = PipelineConfig().with_overrides(
        {
            "diffusion.model": "null-fixed",
            "diffusion.device": "cpu",
            "diffusion.null_render_ms": 200.0,
            "inference.width": 64,
            "inference.height": 64,
        }
    )
    conductor = Conductor.from_config(config)
    features = make_features(num_frames=8)
    first = conductor.launch(conductor.plan(features.state_at_frame(0), 0))
    second = conductor.launch(conductor.plan(features.state_at_frame(1), 1))
    assert not first.ready()
    a, b = first.wait(), second.wait()
    assert (a.index, b.index) == (0, 1)
    assert a.time == 0.0
    assert b.time == pytest.approx(1 / 24)
    assert conductor.last_frame is b
    conductor.controls.set("pause", True)
    held = conductor.launch(conductor.plan(features.state_at_frame(2), 2)).wait()
    assert held.image is b.image
    assert held.index == 2
    assert conductor.frames_held == 1

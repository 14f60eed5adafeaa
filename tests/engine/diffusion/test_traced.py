"""The CPU path's traced unet and the uint8 conversion: same numbers as the eager code."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.diffusion.sd15 import SD15Pipeline, UnetCall, rgba_uint8
from engine.diffusion.traced import TracedCalls
from tests.engine.diffusion.support import tiny_configs

Noise = Callable[..., torch.Tensor]


class Affine(torch.nn.Module):
    """A small module that counts its Python calls (a replayed trace does not call it)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(8, 8), requires_grad=False)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.relu(x @ self.weight) + 1.0


class NotATensor(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> object:
        return {"sum": int(x.sum())}


def test_a_signature_is_traced_on_its_second_use_and_replayed_exactly() -> None:
    module = Affine()
    calls = TracedCalls(module)
    x = torch.randn(3, 8)
    first = calls(x)  # eager
    second = calls(x)  # traces (one python call while recording), then replays
    assert module.calls == 2
    assert calls.traced == 1
    for seed in range(3):
        y = torch.randn(3, 8, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(calls(y), module(y), rtol=0, atol=0)
    assert module.calls == 2 + 3  # only the direct module(y) calls above ran python
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    calls(torch.randn(5, 8))  # a new shape is a new signature: eager first
    assert calls.traced == 1


def test_records_are_bounded_least_recently_used_first() -> None:
    calls = TracedCalls(Affine(), trace_after=1, max_traces=2)
    for rows in (1, 2, 3):
        calls(torch.randn(rows, 8))
    assert calls.traced == 2


def test_a_hooked_module_runs_eagerly_so_its_hooks_see_every_call() -> None:
    module = Affine()
    calls = TracedCalls(module, trace_after=1)
    seen: list[int] = []
    handle = module.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[0]))
    try:
        for _ in range(3):
            calls(torch.randn(2, 8))
    finally:
        handle.remove()
    assert seen == [2, 2, 2]
    assert calls.traced == 0
    calls(torch.randn(2, 8))
    assert calls.traced == 1


def test_what_cannot_be_traced_runs_eagerly_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = TracedCalls(NotATensor(), name="odd", trace_after=1)
    with caplog.at_level(logging.INFO, logger="engine.diffusion.traced"):
        assert calls(torch.ones(2)) == {"sum": 2}
        assert calls(torch.ones(3)) == {"sum": 3}
    assert calls.traced == 0
    assert "cannot trace odd" in caplog.text


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="trace_after"):
        TracedCalls(Affine(), trace_after=0)


def test_the_cpu_engine_replays_its_unet_with_the_eager_frames(noise: Noise) -> None:
    traced = SD15Pipeline(*tiny_configs())
    eager = SD15Pipeline(*tiny_configs())
    eager.load_model()
    eager.pipe.unet.register_forward_pre_hook(lambda _m, _a: None)  # keeps it eager
    embeds = traced.encode_prompt("abstract light")
    frames = [traced.generate_batch(noise(seed), embeds) for seed in range(3)]
    assert traced.traced_unet_signatures == 1
    assert eager.traced_unet_signatures == 0
    for seed, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, eager.generate_batch(noise(seed), embeds))


def test_the_unet_call_is_the_plain_diffusers_call(noise: Noise) -> None:
    pipeline = SD15Pipeline(*tiny_configs())
    pipeline.load_model()
    unet = pipeline.pipe.unet
    sample, step = noise(4), torch.tensor(999.0)
    embeds = pipeline.encode_prompt("light")
    with torch.inference_mode():
        expected = unet(sample, step, encoder_hidden_states=embeds, return_dict=False)[0]
        torch.testing.assert_close(UnetCall(unet)(sample, step, embeds), expected, rtol=0, atol=0)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rgba_uint8_rounds_clamps_and_adds_opaque_alpha(
    layout: torch.memory_format, dtype: torch.dtype
) -> None:
    images = torch.linspace(-1.3, 1.3, 2 * 3 * 5 * 7).reshape(2, 3, 5, 7)
    images = images.to(dtype).contiguous(memory_format=layout)
    frames = rgba_uint8(images)
    # the reference: scale, round and clamp, pad an alpha channel, move channels last
    rgb = images.float().add(1.0).mul(127.5).round().clamp(0.0, 255.0).to(torch.uint8)
    expected = F.pad(rgb, (0, 0, 0, 0, 0, 1), value=255).permute(0, 2, 3, 1)
    assert frames.shape == (2, 5, 7, 4)
    assert frames.dtype == torch.uint8
    assert frames.is_contiguous()
    torch.testing.assert_close(frames, expected.contiguous(), rtol=0, atol=0)
    assert int(frames[..., :3].min()) == 0
    assert int(frames[..., :3].max()) == 255
    assert bool((frames[..., 3] == 255).all())

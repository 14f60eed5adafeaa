"""The CUDA-only fast path: skipped cleanly without a GPU, exact with one.

On a machine without CUDA (this project's CI) the GPU tests at the bottom are skipped: they
need the device they test. The fallback tests above them run everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pytest
import torch

from engine.diffusion.cuda_graphs import GraphRunner, cuda_graphs_usable
from engine.diffusion.host import HostTransfer
from engine.diffusion.sd15 import SD15Pipeline
from tests.engine.diffusion.support import needs_cuda, tiny_configs

Noise = Callable[..., torch.Tensor]


def test_cuda_graphs_on_cpu_log_and_run_eagerly(
    tiny: SD15Pipeline, noise: Noise, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.diffusion.sd15"):
        pipeline = SD15Pipeline(*tiny_configs(cuda_graphs=True))
        pipeline.load_model()
    assert "cuda_graphs needs a CUDA device" in caplog.text
    assert not pipeline.uses_cuda_graphs
    embeds = tiny.encode_prompt("abstract light")
    np.testing.assert_array_equal(
        pipeline.generate_batch(noise(1), embeds), tiny.generate_batch(noise(1), embeds)
    )


def test_graph_runner_refuses_a_cpu() -> None:
    assert not cuda_graphs_usable(torch.device("cpu"))
    with pytest.raises(RuntimeError, match="CUDA"):
        GraphRunner(lambda x: (x,), torch.device("cpu"))


def test_host_copy_on_cpu_shares_fresh_tensors_and_copies_reused_ones() -> None:
    transfer = HostTransfer(torch.device("cpu"))
    assert not transfer.pinned
    frames = torch.zeros(1, 4, 4, 4, dtype=torch.uint8)
    shared = transfer.fetch(frames, reused=False)
    owned = transfer.fetch(frames, reused=True)
    frames.fill_(7)
    assert shared[0, 0, 0, 0] == 7  # zero-copy for a tensor nobody reuses
    assert owned[0, 0, 0, 0] == 0
    assert owned.flags.c_contiguous


@needs_cuda
def test_graph_runner_replays_like_eager_on_cuda() -> None:
    device = torch.device("cuda")
    weight = torch.randn(16, 16, device=device)

    def step(x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        return (torch.relu(x @ weight) + (0 if y is None else y),)

    runner = GraphRunner(step, device)
    for seed in range(3):
        x = torch.randn(4, 16, device=device, generator=torch.Generator(device).manual_seed(seed))
        torch.testing.assert_close(runner(x, None)[0], step(x, None)[0])
    assert runner.captured == 1
    runner(torch.randn(2, 16, device=device), None)
    assert runner.captured == 2


@needs_cuda
def test_cuda_graph_frames_match_the_eager_step_on_cuda(noise: Noise) -> None:
    eager = SD15Pipeline(*tiny_configs(device="cuda"))
    graphed = SD15Pipeline(*tiny_configs(device="cuda", cuda_graphs=True))
    graphed.load_model()
    assert graphed.uses_cuda_graphs
    embeds = eager.encode_prompt("abstract light")
    for seed in range(3):
        expected = eager.generate_batch(noise(seed), embeds)
        got = graphed.generate_batch(noise(seed), embeds)
        assert np.abs(got.astype(int) - expected).max() <= 1

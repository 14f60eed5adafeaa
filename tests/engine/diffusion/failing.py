"""A null-kind model that fails on chosen frames, for the show-goes-on tests (issue 11).

``FailingNull`` is the ``null`` model (or ``null-fixed`` with ``render_ms``) whose frame number
``n`` (counting decodes from 1, the daemon's two warm-up frames included; every path of the
stream wrapper decodes once per frame) fails as ``failures[n]`` says:

- ``"runtime"``: raises a torch-style ``RuntimeError`` (a shape error in a LoRA, a lost device);
- ``"oom"``: raises ``torch.OutOfMemoryError`` as CUDA does;
- ``"nan"``: renders from latents full of NaN, so the null model's own finiteness check (the
  same flag a real model computes before its ``uint8`` conversion) marks the frame.
"""

from __future__ import annotations

import torch

from engine.config import DiffusionConfig, InferenceConfig
from engine.diffusion.host import PendingFrames
from engine.diffusion.null import NullPipeline

FAILING_KIND = "null-failing"


class FailingNull(NullPipeline):
    def __init__(
        self,
        diffusion: DiffusionConfig,
        inference: InferenceConfig,
        failures: dict[int, str],
        *,
        render_ms: float = 0.0,
    ) -> None:
        super().__init__(diffusion, inference, render_ms=render_ms)
        self.failures = dict(failures)
        self.launches = 0
        self.failed: list[int] = []

    def launch_decode(self, latents: torch.Tensor) -> PendingFrames:
        self.launches += 1
        kind = self.failures.get(self.launches)
        if kind is not None:
            self.failed.append(self.launches)
        if kind == "runtime":
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (77x768 and 1024x320)")
        if kind == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if kind == "nan":
            latents = torch.full_like(latents, float("nan"))
        return super().launch_decode(latents)

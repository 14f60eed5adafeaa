"""What a prompt becomes for the model: token embeddings and, for SDXL-style models, pooled ones.

SD 1.x/2.x models take token embeddings ``(n, seq, hidden)`` only, and the engine passes them as
plain tensors (the seed's API). SDXL also takes a pooled text embedding ``(n, dim)`` per frame;
:class:`TextConditioning` carries both through the stream wrapper, the chroma blend and the
conductor as one value. Every place that accepts prompt embeddings accepts either form
(:data:`Conditioning`): a tensor is a conditioning without pooled embeddings. Size-dependent
inputs (SDXL's ``add_time_ids``) are not part of it: the pipeline derives them from its frame size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from typing_extensions import TypeVar

from engine.errors import RenderError


@dataclass(frozen=True, eq=False)
class TextConditioning:
    """Token embeddings ``(n, seq, hidden)`` and optional pooled embeddings ``(n, dim)``."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.embeds.ndim != 3:
            raise RenderError(
                f"prompt embeddings: expected (n, seq, hidden), got {tuple(self.embeds.shape)}"
            )
        if self.pooled is not None and (
            self.pooled.ndim != 2 or self.pooled.shape[0] != self.embeds.shape[0]
        ):
            raise RenderError(
                f"pooled prompt embeddings: expected ({self.embeds.shape[0]}, dim), "
                f"got {tuple(self.pooled.shape)}"
            )

    @property
    def batch(self) -> int:
        """How many prompts (frames) it conditions."""
        return int(self.embeds.shape[0])

    def select(self, rows: slice) -> TextConditioning:
        """The conditioning of some rows (frames)."""
        pooled = None if self.pooled is None else self.pooled[rows]
        return TextConditioning(self.embeds[rows], pooled)

    def to(self, device: torch.device, dtype: torch.dtype) -> TextConditioning:
        pooled = None if self.pooled is None else self.pooled.to(device, dtype)
        return TextConditioning(self.embeds.to(device, dtype), pooled)


# what every engine method that takes prompt embeddings accepts
Conditioning = torch.Tensor | TextConditioning

ConditioningT_co = TypeVar(
    "ConditioningT_co", bound=Conditioning, covariant=True, default=Conditioning
)
"""What a kind's ``encode_prompt`` returns, as a pipeline's type parameter: ``torch.Tensor``
for SD 1.x/2.x (``SD15Pipeline``), ``TextConditioning`` for SDXL; a pipeline named without it
(a kind from the registry) may return either."""


def as_conditioning(value: Conditioning) -> TextConditioning:
    """Either form as a :class:`TextConditioning` (a tensor has no pooled embeddings)."""
    return value if isinstance(value, TextConditioning) else TextConditioning(value)


def conditioning_rows(value: Conditioning) -> int:
    """How many frames ``value`` conditions."""
    return as_conditioning(value).batch


def select_rows(value: Conditioning, rows: slice) -> Conditioning:
    """Some rows of either form, in the same form."""
    if isinstance(value, TextConditioning):
        return value.select(rows)
    return value[rows]


def concat(values: Sequence[Conditioning]) -> Conditioning:
    """Rows of several conditionings stacked in order, in their form (all must share it)."""
    if not values:
        raise RenderError("prompt embeddings: nothing to concatenate")
    if all(isinstance(v, torch.Tensor) for v in values):
        return torch.cat([v for v in values if isinstance(v, torch.Tensor)])
    items = [as_conditioning(v) for v in values]
    pooled = [c.pooled for c in items]
    if any(p is None for p in pooled) and not all(p is None for p in pooled):
        raise RenderError("prompt embeddings: cannot mix conditionings with and without pooled")
    return TextConditioning(
        torch.cat([c.embeds for c in items]),
        None if pooled[0] is None else torch.cat([p for p in pooled if p is not None]),
    )

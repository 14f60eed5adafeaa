"""Chroma-weighted prompt blending: the harmony of the music picks among 12 colour prompts.

Each of the 12 pitch classes (C to B) has a prompt. A frame's chroma column becomes a
distribution over them (normalised power: ``p_k = c_k^s / sum_j c_j^s`` with ``s`` the
``sharpness``), smoothed over time by an exponential moving average
(``w_t = a * w_(t-1) + (1 - a) * p_t`` with ``a = config.smoothing``; the first sounding
frame starts at its own ``p``), and the embeddings are mixed as::

    out = (1 - chroma_weight) * base + chroma_weight * sum_k w_k * chroma_k

A silent frame (all chroma 0) has no pitch: the weights hold their previous value (uniform
before any sound). SDXL's conditioning (:class:`~engine.diffusion.conditioning.TextConditioning`)
blends its token embeddings and its pooled embeddings with the very same weights. The offline form (:meth:`PromptInterpolator.interpolate_prompts`) runs the
very same smoother over the song that the live form (:meth:`PromptInterpolator.blend_for_state`)
runs frame by frame, so both give the same embeddings.
"""

from __future__ import annotations

from typing import overload

import numpy as np
import numpy.typing as npt
import torch

from engine.audio.types import AudioFeatures, MusicState
from engine.config import PromptConfig
from engine.diffusion.conditioning import Conditioning, TextConditioning, as_conditioning
from engine.errors import ControlError, RenderError

Weights = npt.NDArray[np.float64]

NUM_PITCH_CLASSES = 12
# a chroma column whose powered sum is below this counts as silence
_SILENCE = 1e-12


def pitch_distribution(chroma: npt.ArrayLike, sharpness: float) -> Weights | None:
    """A chroma column as a distribution over the 12 pitch classes, or None in silence."""
    powered = np.clip(np.asarray(chroma, dtype=np.float64), 0.0, None) ** sharpness
    total = float(powered.sum())
    if not total > _SILENCE:
        return None
    return powered / total


class ChromaSmoother:
    """The exponential moving average of pitch-class weights; one step per video frame."""

    def __init__(self, smoothing: float, sharpness: float) -> None:
        self.smoothing = smoothing
        self.sharpness = sharpness
        self._weights: Weights | None = None

    def step(self, chroma: npt.ArrayLike) -> Weights:
        """Advance by one frame's chroma column and return the smoothed weights (sum 1)."""
        target = pitch_distribution(chroma, self.sharpness)
        previous = self._weights
        if target is None:
            # silence has no pitch: hold, or stay uniform until the first sound
            if previous is None:
                return np.full(NUM_PITCH_CLASSES, 1.0 / NUM_PITCH_CLASSES)
            return previous.copy()
        weights = (
            target
            if previous is None
            else self.smoothing * previous + (1.0 - self.smoothing) * target
        )
        self._weights = weights
        return weights.copy()

    def reset(self) -> None:
        """Forget the history: the next step starts afresh."""
        self._weights = None


class PromptInterpolator:
    """Blends a base prompt's embeddings with 12 chroma prompts' by the music's harmony.

    ``device``/``dtype`` are where the blended embeddings are returned. ``sharpness`` is the
    power applied to chroma before normalising (1: proportional, larger: the dominant pitch
    class wins more clearly). The live form keeps its smoothing state; :meth:`reset` clears it.
    """

    def __init__(
        self,
        config: PromptConfig,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        *,
        sharpness: float = 2.0,
    ) -> None:
        if not sharpness > 0:
            raise ControlError(f"prompt: sharpness must be above 0, got {sharpness}")
        self.config = config
        self.device = torch.device(device)
        self.dtype = dtype
        self.sharpness = sharpness
        self._live = self._smoother()

    def _smoother(self) -> ChromaSmoother:
        return ChromaSmoother(self.config.smoothing, self.sharpness)

    # -- weights ------------------------------------------------------------------------------

    def chroma_weights(self, features: AudioFeatures) -> Weights:
        """The smoothed pitch-class weights of every frame, ``(num_frames, 12)``, rows sum to 1.

        Independent of the live state: a fresh smoother runs over the song.
        """
        smoother = self._smoother()
        weights = np.empty((features.num_frames, NUM_PITCH_CLASSES), dtype=np.float64)
        for i in range(features.num_frames):
            weights[i] = smoother.step(features.chroma_cq[:, i])
        return weights

    def weights_for_state(self, state: MusicState) -> Weights:
        """Advance the live smoothing by one frame and return its weights ``(12,)``."""
        return self._live.step(state.chroma)

    def reset(self) -> None:
        """Clear the live smoothing state (e.g. when a new song starts)."""
        self._live.reset()

    # -- embeddings ---------------------------------------------------------------------------

    @overload
    def interpolate_prompts(
        self,
        features: AudioFeatures,
        base_embeds: torch.Tensor,
        chroma_embeds: torch.Tensor,
        *,
        chroma_weight: float | None = None,
    ) -> torch.Tensor: ...

    @overload
    def interpolate_prompts(
        self,
        features: AudioFeatures,
        base_embeds: TextConditioning,
        chroma_embeds: TextConditioning,
        *,
        chroma_weight: float | None = None,
    ) -> TextConditioning: ...

    def interpolate_prompts(
        self,
        features: AudioFeatures,
        base_embeds: Conditioning,
        chroma_embeds: Conditioning,
        *,
        chroma_weight: float | None = None,
    ) -> Conditioning:
        """Every frame's blended embeddings ``(num_frames, seq, hidden)``.

        ``base_embeds`` is ``(1, seq, hidden)`` or ``(seq, hidden)``, ``chroma_embeds``
        ``(12, seq, hidden)`` (C..B); ``chroma_weight`` defaults to ``config.chroma_weight``.
        """
        return self.blend(self.chroma_weights(features), base_embeds, chroma_embeds, chroma_weight)

    @overload
    def blend_for_state(
        self,
        state: MusicState,
        base_embeds: torch.Tensor,
        chroma_embeds: torch.Tensor,
        *,
        chroma_weight: float | None = None,
    ) -> torch.Tensor: ...

    @overload
    def blend_for_state(
        self,
        state: MusicState,
        base_embeds: Conditioning,
        chroma_embeds: Conditioning,
        *,
        chroma_weight: float | None = None,
    ) -> Conditioning: ...

    def blend_for_state(
        self,
        state: MusicState,
        base_embeds: Conditioning,
        chroma_embeds: Conditioning,
        *,
        chroma_weight: float | None = None,
    ) -> Conditioning:
        """One frame's blended embeddings ``(1, seq, hidden)``, advancing the live smoothing."""
        weights = self.weights_for_state(state)
        return self.blend(weights[None, :], base_embeds, chroma_embeds, chroma_weight)

    @overload
    def blend(
        self,
        weights: npt.ArrayLike,
        base_embeds: torch.Tensor,
        chroma_embeds: torch.Tensor,
        chroma_weight: float | None = None,
    ) -> torch.Tensor: ...

    @overload
    def blend(
        self,
        weights: npt.ArrayLike,
        base_embeds: Conditioning,
        chroma_embeds: Conditioning,
        chroma_weight: float | None = None,
    ) -> Conditioning: ...

    def blend(
        self,
        weights: npt.ArrayLike,
        base_embeds: Conditioning,
        chroma_embeds: Conditioning,
        chroma_weight: float | None = None,
    ) -> Conditioning:
        """Mix embeddings with given pitch-class weights ``(m, 12)``: ``(m, seq, hidden)`` (a
        ``TextConditioning`` when given ones: pooled embeddings mixed by the same weights)."""
        if isinstance(base_embeds, torch.Tensor) and isinstance(chroma_embeds, torch.Tensor):
            return self._mix(self._mix_weights(weights, chroma_weight), base_embeds, chroma_embeds)
        base, chroma = as_conditioning(base_embeds), as_conditioning(chroma_embeds)
        mix = self._mix_weights(weights, chroma_weight)
        embeds = self._mix(mix, base.embeds, chroma.embeds)
        if base.pooled is None and chroma.pooled is None:
            return TextConditioning(embeds)
        if base.pooled is None or chroma.pooled is None:
            raise RenderError("prompt blend: both base and chroma embeddings need pooled ones")
        # pooled rows as one-token sequences, through the same mix
        pooled = self._mix(mix, base.pooled[:, None, :], chroma.pooled[:, None, :])
        return TextConditioning(embeds, pooled[:, 0, :])

    def _mix_weights(
        self, weights: npt.ArrayLike, chroma_weight: float | None
    ) -> tuple[float, torch.Tensor]:
        """The chroma share and the weights ``(m, 12)`` on the device, checked: made once for
        every tensor a blend mixes (SDXL's token and pooled embeddings)."""
        share = self.config.chroma_weight if chroma_weight is None else float(chroma_weight)
        if not 0.0 <= share <= 1.0:
            raise ControlError(f"prompt: chroma_weight must be within 0..1, got {chroma_weight}")
        rows = np.asarray(weights, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != NUM_PITCH_CLASSES:
            raise RenderError(f"prompt blend: weights must be (m, 12), got {rows.shape}")
        return share, torch.from_numpy(rows).to(device=self.device, dtype=self.dtype)

    def _mix(
        self,
        mix: tuple[float, torch.Tensor],
        base_embeds: torch.Tensor,
        chroma_embeds: torch.Tensor,
    ) -> torch.Tensor:
        share, mix_weights = mix
        base, chroma = self._check_embeds(base_embeds, chroma_embeds)
        _, seq, hidden = chroma.shape
        mixed = (mix_weights @ chroma.reshape(NUM_PITCH_CLASSES, -1)).reshape(-1, seq, hidden)
        # in place: the offline result can be large (frames x seq x hidden)
        return mixed.mul_(share).add_(base, alpha=1.0 - share)

    def _check_embeds(
        self, base_embeds: torch.Tensor, chroma_embeds: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if base_embeds.ndim == 2:  # one prompt's (seq, hidden), as the seed passes base_embeds[0]
            base_embeds = base_embeds.unsqueeze(0)
        if base_embeds.ndim != 3 or base_embeds.shape[0] != 1:
            raise RenderError(
                "prompt blend: base_embeds must be (1, seq, hidden) or (seq, hidden), "
                f"got {tuple(base_embeds.shape)}"
            )
        expected = (NUM_PITCH_CLASSES, *base_embeds.shape[1:])
        if tuple(chroma_embeds.shape) != expected:
            raise RenderError(
                f"prompt blend: chroma_embeds must be {expected} to match base_embeds, "
                f"got {tuple(chroma_embeds.shape)}"
            )
        return (
            base_embeds.to(device=self.device, dtype=self.dtype),
            chroma_embeds.to(device=self.device, dtype=self.dtype),
        )

"""Music-synchronised latent walks.

Every latent is a pure function of one :class:`MusicState` (beat count, beat phase, energy,
chroma), the seed and the walk settings, computed by :meth:`LatentGenerator.latent_for_state`.
Offline rendering feeds it ``features.state_at_frame(i)``, live rendering the streaming
analyser's state: one code path, so a frame looks the same whichever way it was reached.

Walks (``LatentConfig.walk``):

- ``beat_slerp``: one noise per keyframe (keyframe ``k = beat_count // beats_per_keyframe``);
  between keyframes the latent slerps from keyframe ``k`` to ``k + 1`` with an ease-out on the
  beat phase, so the image moves most just after a beat and settles before the next.
- ``energy``: the same keyframe path with a smooth (ease-in-out) curve, but the latent only
  leaves the seed's anchor noise as far as ``energy * energy_scale * reactivity`` takes it:
  quiet passages rest, loud ones travel.
- ``circular``: ``anchor + rho * (cos(a) * p + sin(a) * q)`` renormalised, with ``p`` and ``q``
  two more seeded noises, ``rho = circle_radius * reactivity`` and the angle ``a`` the chroma's
  centroid on the circle of fifths (the dominant pitch class when the centroid vanishes).

``reactivity`` (0 to 2, the live control) scales the music's hold: 0 always gives the anchor
noise. For ``beat_slerp`` a reactivity ``r`` below 1 stops the latent a fraction ``r`` of the way
from the anchor to the keyframe path; above 1 the beat's attack gets sharper.

Latents keep a per-element variance close to 1 (slerp, never lerp, between independent
noises) because that is what the diffusion model expects of its starting noise. Noise is drawn
on the CPU from a seeded ``torch.Generator`` (identical on every device), then moved.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Literal, overload

import numpy as np
import torch

from engine.audio.types import AudioFeatures, MusicState
from engine.config import LatentConfig
from engine.errors import ConfigError, ControlError, RenderError

LatentShape = tuple[int, int, int, int]
Ease = Callable[[float], float]

# the exponent of the beat's ease-out: larger snaps to the next keyframe sooner
_ATTACK = 3.0
# below this angle between two noises, slerp falls back to lerp (no division by ~0)
_SLERP_MIN_SIN = 1e-4
# noise streams: distinct seeds for the anchor, the keyframes and the circle's axes
_ANCHOR, _KEYFRAME, _CIRCLE = 0, 1, 2
# pitch class k sits at position 7k mod 12 on the circle of fifths
_FIFTHS_ANGLE = (7 * np.arange(12) % 12) * (2 * np.pi / 12)
_FIFTHS_UNIT = np.stack([np.cos(_FIFTHS_ANGLE), np.sin(_FIFTHS_ANGLE)])
# a centroid shorter than this (uniform chroma, silence) has no meaningful direction
_CENTROID_MIN = 1e-3


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation from ``a`` (t=0) to ``b`` (t=1), both of the same shape.

    Keeps the norm when ``a`` and ``b`` share it; falls back to lerp for nearly parallel
    inputs. On an accelerator it is computed with tensor scalars, so it never synchronises
    with the device; on the cpu the scalars are plain floats (a third of the time per frame).
    """
    if a.device.type == "cpu":
        return _slerp_cpu(a, b, t)
    dot = torch.sum(a * b) / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))
    theta = torch.arccos(torch.clamp(dot, -1.0, 1.0))
    sin_theta = torch.sin(theta)
    parallel = sin_theta < _SLERP_MIN_SIN
    safe_sin = torch.where(parallel, torch.ones_like(sin_theta), sin_theta)
    wa = torch.where(
        parallel, torch.full_like(theta, 1.0 - t), torch.sin((1.0 - t) * theta) / safe_sin
    )
    wb = torch.where(parallel, torch.full_like(theta, t), torch.sin(t * theta) / safe_sin)
    return wa * a + wb * b


def _slerp_cpu(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    norms = float(torch.linalg.vector_norm(a)) * float(torch.linalg.vector_norm(b))
    dot = float(torch.sum(a * b))
    theta = math.acos(min(max(dot / norms, -1.0), 1.0)) if norms > 0 else 0.0
    sin_theta = math.sin(theta)
    if sin_theta < _SLERP_MIN_SIN:
        return torch.add(a * (1.0 - t), b, alpha=t)
    weight_a = math.sin((1.0 - t) * theta) / sin_theta
    return torch.add(a * weight_a, b, alpha=math.sin(t * theta) / sin_theta)


def pitch_angle(chroma: np.ndarray) -> float:
    """The angle (radians) of a 12-bin chroma vector on the circle of fifths.

    The weighted centroid's direction; when the centroid nearly vanishes (silence, all pitch
    classes equal) the dominant pitch class's position, C for silence.
    """
    values = np.asarray(chroma, dtype=np.float64)
    total = float(values.sum())
    if total > 0:
        x, y = _FIFTHS_UNIT @ (values / total)
        if np.hypot(x, y) > _CENTROID_MIN:
            return float(np.arctan2(y, x))
    return float(_FIFTHS_ANGLE[int(np.argmax(values))])


def _ease_out(u: float, power: float) -> float:
    # u is a phase in [0, 1]: the base is never negative, the power real
    return 1.0 - float((1.0 - u) ** power)


def _ease_in_out(u: float) -> float:
    return u * u * (3.0 - 2.0 * u)


def _check_shape(latent_shape: Sequence[int]) -> LatentShape:
    sizes = tuple(int(d) for d in latent_shape)
    if len(sizes) != 4 or min(sizes) < 1:
        raise RenderError(
            f"latent: latent_shape must be 4 positive sizes (batch, channels, height, width), "
            f"got {tuple(latent_shape)}"
        )
    return (sizes[0], sizes[1], sizes[2], sizes[3])


class LatentWalk(Sequence[torch.Tensor]):
    """A walk computed on demand: ``walk[i]`` is frame ``i``'s latent ``(C, h, w)``.

    Holds only the features and settings, so memory stays constant however long the song;
    items equal the precomputed walk's rows. A slice gives a stacked ``(n, C, h, w)`` tensor.
    """

    def __init__(
        self,
        generator: LatentGenerator,
        features: AudioFeatures,
        latent_shape: LatentShape,
        seed: int,
        reactivity: float,
    ) -> None:
        self._generator = generator
        self._features = features
        self._shape = latent_shape
        self._seed = seed
        self._reactivity = reactivity

    def __len__(self) -> int:
        return self._features.num_frames

    # a slice gives a stacked tensor, like slicing the precomputed walk; a tensor is a
    # sequence of its rows at run time, which typing cannot express
    @overload  # type: ignore[override]
    def __getitem__(self, index: int) -> torch.Tensor: ...

    @overload
    def __getitem__(self, index: slice) -> torch.Tensor: ...

    def __getitem__(self, index: int | slice) -> torch.Tensor:
        if isinstance(index, slice):
            frames = range(len(self))[index]
            c, h, w = self._shape[1:]
            if not frames:
                return torch.empty(
                    (0, c, h, w), device=self._generator.device, dtype=self._generator.dtype
                )
            return torch.stack([self._frame(i) for i in frames])
        n = len(self)
        position = index + n if index < 0 else index
        if not 0 <= position < n:
            raise IndexError(f"latent walk index {index} outside -{n}..{n - 1}")
        return self._frame(position)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for i in range(len(self)):
            yield self._frame(i)

    def _frame(self, i: int) -> torch.Tensor:
        state = self._features.state_at_frame(i)
        latent = self._generator.latent_for_state(
            state, self._shape, seed=self._seed, reactivity=self._reactivity
        )
        return latent[0]


class LatentGenerator:
    """Turns music into diffusion starting latents (see the module docstring for the walks).

    ``device``/``dtype`` are where the latents are returned. Keyframe noises are kept in a
    small LRU cache (``cache_size`` entries), so a frame usually costs a slerp, not an RNG
    draw. Safe to call from several threads (the cache is locked; drawing is deterministic).
    """

    def __init__(
        self,
        config: LatentConfig,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        *,
        cache_size: int = 16,
    ) -> None:
        if cache_size < 3:
            # one frame needs up to three noises at once (anchor + two keyframes)
            raise ConfigError(f"latent: cache_size must be at least 3, got {cache_size}")
        self.config = config
        self.device = torch.device(device)
        self.dtype = dtype
        self.cache_size = cache_size
        #: the shape of the last walk or latent made; the default of ``get_latent_at_frame``
        self.latent_shape: LatentShape | None = None
        self._cache: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()
        self._draws = 0

    # -- noise ------------------------------------------------------------------------------

    def noise(
        self, stream: int, index: int, latent_shape: Sequence[int], seed: int | None = None
    ) -> torch.Tensor:
        """The seeded unit-variance noise ``(C, h, w)`` (float32, on the device) of one stream.

        ``stream`` 0 is the anchor, 1 the keyframes (``index`` = keyframe number), 2 the
        circle's axes (``index`` 0 and 1). Cached; the same arguments give the same tensor.
        """
        shape = _check_shape(latent_shape)
        seed = self._seed(seed)
        key = (seed, stream, index, *shape[1:])
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        # the seed sequence mixes (seed, stream, index) into a well-spread 64-bit seed
        mixed = np.random.SeedSequence((seed, stream, index)).generate_state(1, dtype=np.uint64)[0]
        rng = torch.Generator(device="cpu").manual_seed(int(mixed))
        drawn = torch.randn(shape[1:], generator=rng, dtype=torch.float32).to(self.device)
        with self._lock:
            self._draws += 1
            self._cache[key] = drawn
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return drawn

    def keyframe_noise(
        self, keyframe: int, latent_shape: Sequence[int], seed: int | None = None
    ) -> torch.Tensor:
        """Keyframe ``keyframe``'s noise ``(C, h, w)``: the latent on that keyframe's beat."""
        return self.noise(_KEYFRAME, keyframe, latent_shape, seed)

    def anchor_noise(self, latent_shape: Sequence[int], seed: int | None = None) -> torch.Tensor:
        """The seed's resting noise ``(C, h, w)``: every walk's latent at reactivity 0."""
        return self.noise(_ANCHOR, 0, latent_shape, seed)

    def cache_info(self) -> dict[str, int]:
        """How many noises are cached now, the limit, and how many were drawn in total."""
        with self._lock:
            return {"cached": len(self._cache), "limit": self.cache_size, "draws": self._draws}

    def clear_cache(self) -> None:
        """Forget the cached noises (they are redrawn identically on demand)."""
        with self._lock:
            self._cache.clear()

    # -- the one code path --------------------------------------------------------------------

    def latent_for_state(
        self,
        state: MusicState,
        latent_shape: Sequence[int],
        *,
        seed: int | None = None,
        reactivity: float = 1.0,
    ) -> torch.Tensor:
        """The latent ``(1, C, h, w)`` for one moment of music, on ``device`` in ``dtype``.

        ``latent_shape`` is the pipeline's ``(batch, C, h, w)``; the batch size is ignored.
        ``seed`` defaults to ``config.seed``; ``reactivity`` 0 gives a constant latent.
        """
        shape = _check_shape(latent_shape)
        seed = self._seed(seed)
        if not reactivity >= 0:
            raise ControlError(f"latent: reactivity must be 0 or more, got {reactivity}")
        self.latent_shape = shape
        anchor = self.anchor_noise(shape, seed)
        walk = self.config.walk
        if reactivity == 0:
            latent = anchor
        elif walk == "beat_slerp":
            power = _ATTACK * max(reactivity, 1.0)
            path = self._keyframe_path(state, shape, seed, lambda u: _ease_out(u, power))
            latent = path if reactivity >= 1 else slerp(anchor, path, reactivity)
        elif walk == "energy":
            depth = min(state.energy * self.config.energy_scale * reactivity, 1.0)
            path = self._keyframe_path(state, shape, seed, _ease_in_out)
            latent = anchor if depth <= 0 else slerp(anchor, path, depth)
        else:
            latent = self._circle_point(state, shape, seed, reactivity)
        # a copy: the anchor and keyframes are cached and a caller may work in place
        return latent.to(dtype=self.dtype, copy=True).unsqueeze(0)

    def _keyframe_path(
        self, state: MusicState, shape: LatentShape, seed: int, ease: Ease
    ) -> torch.Tensor:
        per_key = self.config.beats_per_keyframe
        key, beats_in = divmod(max(state.beat_count, 0), per_key)
        u = (beats_in + min(max(state.beat_phase, 0.0), 1.0)) / per_key
        start = self.keyframe_noise(key, shape, seed)
        t = ease(u)
        if t <= 0:
            return start
        return slerp(start, self.keyframe_noise(key + 1, shape, seed), t)

    def _circle_point(
        self, state: MusicState, shape: LatentShape, seed: int, reactivity: float
    ) -> torch.Tensor:
        rho = self.config.circle_radius * reactivity
        angle = pitch_angle(state.chroma)
        p = self.noise(_CIRCLE, 0, shape, seed)
        q = self.noise(_CIRCLE, 1, shape, seed)
        # anchor, p and q are independent unit-variance noises: the sum's variance is 1 + rho^2
        x, y = rho * float(np.cos(angle)), rho * float(np.sin(angle))
        point = self.anchor_noise(shape, seed) + x * p + y * q
        return point / float(np.sqrt(1.0 + rho * rho))

    def _seed(self, seed: int | None) -> int:
        if seed is None:
            return self.config.seed
        if int(seed) != seed or seed < 0:
            raise ControlError(f"latent: seed must be a whole number 0 or more, got {seed!r}")
        return int(seed)

    # -- whole songs --------------------------------------------------------------------------

    @overload
    def generate_latent_walk(
        self,
        features: AudioFeatures,
        latent_shape: Sequence[int],
        precompute: Literal[True] = True,
        *,
        seed: int | None = None,
        reactivity: float = 1.0,
    ) -> torch.Tensor: ...

    @overload
    def generate_latent_walk(
        self,
        features: AudioFeatures,
        latent_shape: Sequence[int],
        precompute: Literal[False],
        *,
        seed: int | None = None,
        reactivity: float = 1.0,
    ) -> LatentWalk: ...

    @overload
    def generate_latent_walk(
        self,
        features: AudioFeatures,
        latent_shape: Sequence[int],
        precompute: bool,
        *,
        seed: int | None = None,
        reactivity: float = 1.0,
    ) -> torch.Tensor | LatentWalk: ...

    def generate_latent_walk(
        self,
        features: AudioFeatures,
        latent_shape: Sequence[int],
        precompute: bool = True,
        *,
        seed: int | None = None,
        reactivity: float = 1.0,
    ) -> torch.Tensor | LatentWalk:
        """Every frame's latent: a ``(num_frames, C, h, w)`` tensor, or with
        ``precompute=False`` a lazy :class:`LatentWalk` of ``(C, h, w)`` items."""
        shape = _check_shape(latent_shape)
        seed = self._seed(seed)
        self.latent_shape = shape
        walk = LatentWalk(self, features, shape, seed, reactivity)
        if not precompute:
            return walk
        out = torch.empty((len(walk), *shape[1:]), device=self.device, dtype=self.dtype)
        for i, latent in enumerate(walk):
            out[i] = latent
        return out

    def get_latent_at_frame(
        self,
        frame: int,
        features: AudioFeatures,
        latent_shape: Sequence[int] | None = None,
        *,
        seed: int | None = None,
        reactivity: float = 1.0,
    ) -> torch.Tensor:
        """Frame ``frame``'s latent ``(1, C, h, w)``, equal to the precomputed walk's row.

        ``latent_shape`` defaults to the shape of the last walk or latent this generator made.
        """
        if latent_shape is None:
            if self.latent_shape is None:
                raise RenderError(
                    "latent: get_latent_at_frame needs latent_shape (no walk has been generated yet)"
                )
            latent_shape = self.latent_shape
        return self.latent_for_state(
            features.state_at_frame(frame), latent_shape, seed=seed, reactivity=reactivity
        )

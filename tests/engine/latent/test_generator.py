"""Latent walks: one code path per frame, reproducible, beat-locked, variance kept near 1."""

from __future__ import annotations

import gc
import random
import weakref

import numpy as np
import pytest
import torch

from engine.audio.types import MusicState
from engine.config import LatentConfig
from engine.errors import ConfigError, ControlError, RenderError
from engine.latent.generator import LatentGenerator, LatentWalk, pitch_angle, slerp
from tests.engine.synthetic import BEAT_PERIOD, make_features, one_hot_chroma

SHAPE = (1, 4, 16, 16)
WALKS = ("beat_slerp", "energy", "circular")


def generator(walk: str = "beat_slerp", **fields: object) -> LatentGenerator:
    return LatentGenerator(LatentConfig.model_validate({"walk": walk, **fields}))


def state(
    *, beat_count: int = 0, beat_phase: float = 0.0, energy: float = 0.5, pitch: int = 0
) -> MusicState:
    """A live-style state built field by field, as the streaming analyser would."""
    chroma = np.zeros(12, dtype=np.float32)
    chroma[pitch] = 1.0
    return MusicState(
        frame=0,
        time=0.0,
        energy=energy,
        onset=0.0,
        beat=beat_phase == 0.0,
        beat_phase=beat_phase,
        beat_count=beat_count,
        tempo=120.0,
        chroma=chroma,
    )


def steps(walk: torch.Tensor) -> np.ndarray:
    """Distance between consecutive latents."""
    distances: np.ndarray = (walk[1:] - walk[:-1]).flatten(1).norm(dim=1).numpy()
    return distances


@pytest.mark.parametrize("walk", WALKS)
def test_frame_equals_precomputed_walk_in_any_order(walk: str) -> None:
    features = make_features(72)
    full = generator(walk).generate_latent_walk(features, SHAPE)
    assert isinstance(full, torch.Tensor)
    assert full.shape == (72, 4, 16, 16)
    assert full.dtype == torch.float32
    fresh = generator(walk)  # an empty noise cache: nothing carried over from the walk
    order = list(range(72))
    random.Random(3).shuffle(order)
    for i in order:
        latent = fresh.get_latent_at_frame(i, features, SHAPE)
        assert latent.shape == (1, 4, 16, 16)
        assert torch.equal(latent[0], full[i]), f"frame {i}"


def test_latent_shape_defaults_to_the_last_walk() -> None:
    features = make_features(24)
    gen = generator()
    full = gen.generate_latent_walk(features, SHAPE)
    assert torch.equal(gen.get_latent_at_frame(5, features)[0], full[5])
    with pytest.raises(RenderError, match="latent_shape"):
        generator().get_latent_at_frame(5, features)


@pytest.mark.parametrize("walk", WALKS)
def test_live_state_gives_the_offline_latent(walk: str) -> None:
    # a MusicState built from scratch (as live analysis does) with the same musical fields
    features = make_features(48, chroma=one_hot_chroma(np.arange(48) % 12))
    full = generator(walk).generate_latent_walk(features, SHAPE)
    gen = generator(walk)
    for i in (0, 7, 13, 30):
        offline = features.state_at_frame(i)
        live = state(
            beat_count=offline.beat_count,
            beat_phase=offline.beat_phase,
            energy=offline.energy,
            pitch=i % 12,
        )
        assert torch.equal(gen.latent_for_state(live, SHAPE)[0], full[i])


def test_lazy_walk_equals_precomputed() -> None:
    features = make_features(40)
    full = generator().generate_latent_walk(features, SHAPE)
    lazy = generator().generate_latent_walk(features, SHAPE, precompute=False)
    assert isinstance(lazy, LatentWalk)
    assert len(lazy) == 40
    assert torch.equal(torch.stack(list(lazy)), full)
    assert torch.equal(lazy[-1], full[39])
    assert torch.equal(lazy[-40], full[0])
    assert torch.equal(lazy[3:9:2], full[3:9:2])
    assert lazy[50:].shape == (0, 4, 16, 16)
    for bad in (40, -41):
        with pytest.raises(IndexError, match=str(bad)):
            lazy[bad]


def test_lazy_walk_holds_no_frames() -> None:
    features = make_features(96)
    gen = generator()
    lazy = gen.generate_latent_walk(features, SHAPE, precompute=False)
    one_frame = 4 * 16 * 16 * 4
    refs = []
    for latent in lazy:
        # each item owns just its own frame, not a view into a whole precomputed walk
        assert latent.untyped_storage().nbytes() == one_frame
        refs.append(weakref.ref(latent))
    del latent
    gc.collect()
    assert not any(ref() is not None for ref in refs), "the walk kept frames alive"
    info = gen.cache_info()
    assert info["cached"] <= info["limit"]
    # 96 frames span 8 beats: 9 keyframes plus the anchor, each drawn once
    assert info["draws"] == 10


def test_same_seed_same_walk_other_seed_other_walk() -> None:
    features = make_features(36)
    a = generator(seed=7).generate_latent_walk(features, SHAPE)
    b = generator(seed=7).generate_latent_walk(features, SHAPE)
    c = generator(seed=8).generate_latent_walk(features, SHAPE)
    d = generator(seed=7).generate_latent_walk(features, SHAPE, seed=8)
    assert isinstance(a, torch.Tensor)
    assert isinstance(c, torch.Tensor)
    assert torch.equal(a, b)
    assert torch.equal(c, d)  # the seed argument (the live control) overrides the config's
    assert (a - c).abs().mean() > 0.5


def test_beat_slerp_lands_on_keyframes_at_beats() -> None:
    features = make_features(96)
    gen = generator("beat_slerp")
    full = gen.generate_latent_walk(features, SHAPE)
    for beat in features.beat_frames:
        count = features.beat_count_at_frame(int(beat))
        assert torch.allclose(full[beat], gen.keyframe_noise(count, SHAPE), atol=1e-6)
    # between beats the latent is no keyframe
    assert not torch.allclose(full[6], gen.keyframe_noise(1, SHAPE), atol=0.1)


def test_beat_slerp_moves_fastest_just_after_each_beat() -> None:
    features = make_features(96)
    full = generator("beat_slerp").generate_latent_walk(features, SHAPE)
    assert isinstance(full, torch.Tensor)
    moves = steps(full)  # moves[i]: frame i -> i + 1
    for beat in features.beat_frames[:-1]:
        interval = moves[beat : beat + BEAT_PERIOD]
        assert int(np.argmax(interval)) == 0, f"beat at frame {beat}: {interval.round(1)}"
        # and it settles: the step into the next beat is the smallest
        assert int(np.argmin(interval)) == BEAT_PERIOD - 1


def test_keyframes_change_every_n_beats() -> None:
    features = make_features(96)
    gen = generator("beat_slerp", beats_per_keyframe=2)
    full = gen.generate_latent_walk(features, SHAPE)
    for beat in features.beat_frames:
        count = features.beat_count_at_frame(int(beat))
        on_keyframe = torch.allclose(full[beat], gen.keyframe_noise(count // 2, SHAPE), atol=1e-6)
        assert on_keyframe == (count % 2 == 0), f"beat {count}"


@pytest.mark.parametrize("walk", WALKS)
def test_reactivity_zero_gives_a_constant_latent(walk: str) -> None:
    features = make_features(60)
    gen = generator(walk)
    still = gen.generate_latent_walk(features, SHAPE, reactivity=0.0)
    assert isinstance(still, torch.Tensor)
    assert torch.equal(still, gen.anchor_noise(SHAPE).expand_as(still))
    moving = gen.generate_latent_walk(features, SHAPE, reactivity=1.0)
    assert isinstance(moving, torch.Tensor)
    assert steps(moving).max() > 1.0


def test_reactivity_scales_the_departure_from_the_anchor() -> None:
    gen = generator("beat_slerp")
    anchor = gen.anchor_noise(SHAPE)
    s = state(beat_count=3, beat_phase=0.4)
    distances = [
        (gen.latent_for_state(s, SHAPE, reactivity=r)[0] - anchor).norm().item()
        for r in (0.0, 0.25, 0.5, 1.0)
    ]
    assert distances[0] == 0.0
    assert distances == sorted(distances)
    assert len(set(distances)) == 4


def test_energy_walk_rests_in_silence_and_travels_when_loud() -> None:
    gen = generator("energy", energy_scale=1.0)
    anchor = gen.anchor_noise(SHAPE)

    def at(energy: float) -> MusicState:
        return state(beat_count=2, beat_phase=0.5, energy=energy)

    assert torch.equal(gen.latent_for_state(at(0.0), SHAPE)[0], anchor)
    distances = [
        (gen.latent_for_state(at(e), SHAPE)[0] - anchor).norm().item() for e in (0.1, 0.4, 0.8)
    ]
    assert distances == sorted(distances)
    assert distances[0] > 0
    # reactivity multiplies energy: half the reactivity at twice the energy is the same latent
    a = gen.latent_for_state(at(0.4), SHAPE, reactivity=0.5)
    b = gen.latent_for_state(at(0.2), SHAPE, reactivity=1.0)
    assert torch.allclose(a, b, atol=1e-6)


def test_circular_walk_follows_pitch() -> None:
    gen = generator("circular", circle_radius=1.0)
    g_early = gen.latent_for_state(state(pitch=7, beat_count=0, energy=0.1), SHAPE)
    g_late = gen.latent_for_state(state(pitch=7, beat_count=9, beat_phase=0.5, energy=0.9), SHAPE)
    c = gen.latent_for_state(state(pitch=0), SHAPE)
    f_sharp = gen.latent_for_state(state(pitch=6), SHAPE)
    assert torch.equal(g_early, g_late)  # only pitch moves the circular walk
    # neighbours on the circle of fifths (C, G) lie closer than opposites (C, F#)
    near, far = (g_early - c).norm().item(), (f_sharp - c).norm().item()
    assert 0 < near < far / 2


def test_pitch_angle_uses_the_circle_of_fifths() -> None:
    one_hot = np.eye(12)
    # G (7) is one step round the circle of fifths from C; D (2) two steps
    assert pitch_angle(one_hot[7]) == pytest.approx(np.pi / 6)
    assert pitch_angle(one_hot[2]) == pytest.approx(np.pi / 3)
    # C and G together: halfway between their places
    assert pitch_angle(one_hot[0] + one_hot[7]) == pytest.approx(np.pi / 12)
    assert pitch_angle(np.zeros(12)) == 0.0  # silence: C
    assert pitch_angle(np.ones(12)) == 0.0  # no direction: the first dominant class


@pytest.mark.parametrize(
    ("walk", "fields", "reactivity"),
    [
        ("beat_slerp", {}, 1.0),
        ("beat_slerp", {}, 0.5),
        ("beat_slerp", {"beats_per_keyframe": 4}, 2.0),
        ("energy", {"energy_scale": 2.0}, 1.0),
        ("circular", {"circle_radius": 3.0}, 1.0),
        ("circular", {"circle_radius": 0.5}, 0.7),
    ],
)
def test_variance_stays_near_one(walk: str, fields: dict[str, float], reactivity: float) -> None:
    features = make_features(48)
    gen = LatentGenerator(LatentConfig.model_validate({"walk": walk, **fields}))
    shape = (1, 4, 64, 64)
    full = gen.generate_latent_walk(features, shape, reactivity=reactivity)
    assert isinstance(full, torch.Tensor)
    variance = full.flatten(1).var(dim=1)
    # 16384 elements per latent: the sample variance of true unit noise is 1 +- 0.011
    assert variance.min() > 0.95, variance
    assert variance.max() < 1.05, variance


def test_slerp_keeps_norm_where_lerp_would_not() -> None:
    rng = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 4096, generator=rng)
    mid = slerp(a, b, 0.5)
    assert mid.var().item() == pytest.approx(1.0, abs=0.06)
    assert ((a + b) / 2).var().item() < 0.6  # the lerp midpoint of independent noises
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    assert torch.allclose(slerp(a, a, 0.3), a, atol=1e-6)  # parallel inputs: no nan


def test_dtype_and_fresh_tensors() -> None:
    gen = LatentGenerator(LatentConfig(), dtype=torch.float16)
    latent = gen.latent_for_state(state(), SHAPE, reactivity=0.0)
    assert latent.dtype == torch.float16
    assert latent.device.type == "cpu"
    # the caller may work in place without touching the cached anchor
    latent.zero_()
    assert gen.latent_for_state(state(), SHAPE, reactivity=0.0).abs().sum() > 0


def test_bad_arguments_name_the_culprit() -> None:
    gen = generator()
    with pytest.raises(RenderError, match="latent_shape"):
        gen.latent_for_state(state(), (4, 16, 16))
    with pytest.raises(RenderError, match="latent_shape"):
        gen.latent_for_state(state(), (1, 0, 16, 16))
    with pytest.raises(ControlError, match="reactivity"):
        gen.latent_for_state(state(), SHAPE, reactivity=-0.1)
    with pytest.raises(ControlError, match="reactivity"):
        gen.latent_for_state(state(), SHAPE, reactivity=float("nan"))
    with pytest.raises(ControlError, match="seed"):
        gen.latent_for_state(state(), SHAPE, seed=-1)
    with pytest.raises(ConfigError, match="cache_size"):
        LatentGenerator(LatentConfig(), cache_size=2)


def test_batch_size_of_the_shape_is_ignored() -> None:
    gen = generator()
    s = state(beat_count=1, beat_phase=0.3)
    batched = gen.latent_for_state(s, (4, *SHAPE[1:]))
    assert batched.shape == (1, 4, 16, 16)
    assert torch.equal(batched, generator().latent_for_state(s, SHAPE))

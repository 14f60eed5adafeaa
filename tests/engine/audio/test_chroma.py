"""Live chroma that hears the same notes as the offline analysis (issue 17).

Synthetic music with known notes (piano-like tones with eight decaying partials, triads over a
doubled bass, a progression that changes key), analysed by both paths: the offline analyzer and
the streaming analyzer fed 512-sample blocks. Both go through the prompt blend's smoothing, as
the renderer uses them; "agreement" is the share of frames whose strongest blend weight is the
same pitch class on both paths.
"""

from __future__ import annotations

import librosa
import numpy as np
import numpy.typing as npt
import pytest

from engine.audio.analyzer import AudioAnalyzer
from engine.audio.chroma import (
    BINS_PER_OCTAVE,
    LiveChroma,
    normalise_frames,
    octaves_for,
    pitch_classes,
)
from engine.audio.streaming import StreamingAnalyzer
from engine.audio.types import PITCH_CLASSES
from engine.config import AudioConfig, PromptConfig
from engine.prompt.interpolator import PromptInterpolator
from tests.engine.audio.signals import (
    PITCH_INDEX,
    Samples,
    piano_note,
    progression,
    tones,
    triad_with_bass,
)

SR = 22050
FPS = AudioConfig().fps
Weights = npt.NDArray[np.float64]

C_MAJOR = ("C", "D", "E", "F", "G", "A", "B")
A_FLAT_MAJOR = ("G#", "A#", "C", "C#", "D#", "F", "G")


def _blend_weights(analyzer: AudioAnalyzer, y: Samples, rate: int = SR) -> tuple[Weights, Weights]:
    """The smoothed blend weights ``(frames, 12)`` offline and live, over the frames both have."""
    features = analyzer.analyze_samples(y, SR)
    stream = y if rate == SR else librosa.resample(y, orig_sr=SR, target_sr=rate)
    live = StreamingAnalyzer(AudioConfig(), rate)
    states = []
    for start in range(0, stream.size, 512):
        states += live.push(stream[start : start + 512])
    interpolator = PromptInterpolator(PromptConfig())
    offline_weights = interpolator.chroma_weights(features)
    live_weights = np.array([interpolator.weights_for_state(s) for s in states])
    n = min(len(offline_weights), len(live_weights))
    assert n >= 0.95 * features.num_frames
    return offline_weights[:n], live_weights[:n]


def _agreement(offline: Weights, live: Weights) -> float:
    return float(np.mean(offline.argmax(axis=1) == live.argmax(axis=1)))


def _distance(offline: Weights, live: Weights) -> float:
    """Mean total-variation distance between the two paths' weights (0 same, 1 disjoint)."""
    return float(np.mean(0.5 * np.abs(offline - live).sum(axis=1)))


def _dominant(weights: Weights) -> str:
    return PITCH_CLASSES[int(np.argmax(weights.sum(axis=0)))]


def _mass(weights: Weights, scale: tuple[str, ...]) -> Weights:
    """Each frame's total weight on the pitch classes of ``scale``."""
    return np.asarray(weights[:, [PITCH_INDEX[p] for p in scale]].sum(axis=1), dtype=np.float64)


@pytest.mark.parametrize(("name", "note"), [("E2", 40), ("A1", 33), ("C2", 36)])
def test_low_piano_notes_sound_as_themselves_not_as_their_fifth(
    analyzer: AudioAnalyzer, name: str, note: int
) -> None:
    y = np.concatenate([piano_note(note, 2.0, SR)] * 3)

    offline, live = _blend_weights(analyzer, y)

    expected = name[:-1]
    assert _dominant(offline) == expected
    assert _dominant(live) == expected, live.sum(axis=0).round(1)
    assert _agreement(offline, live) >= 0.9
    assert _distance(offline, live) < 0.1


@pytest.mark.parametrize("rate", [SR, 48000])
def test_triads_over_a_doubled_bass_agree_with_offline(analyzer: AudioAnalyzer, rate: int) -> None:
    roots = [(52, True), (48, False), (55, False), (50, False), (45, True), (47, False)]
    y = progression([triad_with_bass(r, minor) for r, minor in roots], 2.0, SR)

    offline, live = _blend_weights(analyzer, y, rate)

    assert _agreement(offline, live) >= 0.9
    assert _distance(offline, live) < 0.1
    frames = round(2.0 * FPS)
    for i, (root, _) in enumerate(roots):
        chord = slice(i * frames + frames // 4, (i + 1) * frames)
        name = PITCH_CLASSES[root % 12]
        assert _dominant(offline[chord]) == name
        assert _dominant(live[chord]) == name, i


def test_a_song_in_e_minor_has_its_tonic_as_dominant_pitch_class_on_both_paths(
    analyzer: AudioAnalyzer,
) -> None:
    # i - VI - III - VII - i - iv - V - i: the fifth (B) sounds in four of the eight chords
    chords = [(52, True), (48, False), (55, False), (50, False)]
    chords += [(52, True), (45, True), (47, False), (52, True)]
    y = progression([triad_with_bass(r, minor) for r, minor in chords], 2.0, SR)

    offline, live = _blend_weights(analyzer, y)

    assert _dominant(offline) == _dominant(live) == "E"
    assert _agreement(offline, live) >= 0.9
    assert _distance(offline, live) < 0.1


def test_a_key_change_shows_in_the_live_blend_weights_within_a_second(
    analyzer: AudioAnalyzer,
) -> None:
    # I - IV - V - I in C major, then the same in A-flat major from 8 s on
    roots = [48, 53, 55, 48, 44, 49, 51, 44]
    y = progression([triad_with_bass(r) for r in roots], 2.0, SR)
    change = round(8.0 * FPS)

    offline, live = _blend_weights(analyzer, y)

    assert _agreement(offline, live) >= 0.9
    assert _dominant(offline[:change]) == _dominant(live[:change]) == "C"
    assert _dominant(offline[change:]) == _dominant(live[change:]) == "G#"
    old, new = _mass(live, C_MAJOR), _mass(live, A_FLAT_MAJOR)
    # the second before the change is in C; within a second of it the weights are in A-flat
    assert (old[change - round(FPS) : change] > new[change - round(FPS) : change]).all()
    switched = change + int(np.argmax(new[change:] > old[change:]))
    assert switched - change <= FPS, (switched - change) / FPS
    assert (new[switched:] > old[switched:]).all()


@pytest.mark.parametrize("detune_cents", [-45.0, 30.0, 45.0])
def test_a_detuned_song_gives_the_same_weights_on_both_paths(detune_cents: float) -> None:
    # the offline bins stay at concert pitch, the live ones follow the tuning: the fold's three
    # bins a semitone keep both on the song's own pitch classes
    chords = [(52, True), (45, True), (47, False), (52, True)]
    y = progression([triad_with_bass(r, m) for r, m in chords], 2.0, SR, detune_cents=detune_cents)
    offline, live = _blend_weights(AudioAnalyzer(AudioConfig()), y)
    assert _agreement(offline, live) >= 0.9
    assert _dominant(offline) == _dominant(live) == "E"


@pytest.mark.parametrize("detune_cents", [0.0, 40.0, -25.0])
def test_live_tuning_follows_the_song_like_the_offline_estimate(detune_cents: float) -> None:
    chords = [(52, True), (48, False), (55, False), (50, False)]
    y = progression([triad_with_bass(r, m) for r, m in chords], 2.0, SR, detune_cents=detune_cents)
    chroma = LiveChroma(SR, SR)
    for start in range(0, y.size, 512):
        chroma.push(y[start : start + 512])

    offline = float(librosa.estimate_tuning(y=y, sr=SR, bins_per_octave=BINS_PER_OCTAVE))
    # cents to fractions of a third of a semitone, wrapped into [-0.5, 0.5) as librosa does
    expected = (detune_cents / (100.0 / 3.0) + 0.5) % 1.0 - 0.5
    assert chroma.tuning == pytest.approx(expected, abs=0.1)
    assert chroma.tuning == pytest.approx(offline, abs=0.1)


@pytest.mark.parametrize(("name", "note"), [("A1", 33), ("C#1", 25), ("E2", 40)])
def test_the_lowest_bins_resolve_a_semitone(name: str, note: int) -> None:
    # a sine on the note's bin: the bins a semitone either side hear it about 6 dB down (a
    # filter a semitone wide); one as short as the 186 ms of the bins above G2 would leave them
    # at 0.78 of the peak for A1 and 0.9 for C#1, and the 2048-point FFT at near 1
    bin_of_note = 3 * (note - 24)
    y = tones([440.0 * 2.0 ** ((note - 69) / 12.0)], 1.0, SR)
    chroma = LiveChroma(SR, SR)
    chroma.push(y)

    magnitudes = chroma.magnitudes
    peak = magnitudes[bin_of_note]
    assert int(np.argmax(magnitudes)) == bin_of_note, name
    for neighbour in (bin_of_note - 3, bin_of_note + 3):
        assert magnitudes[neighbour] < 0.55 * peak, (name, magnitudes[neighbour] / peak)


def test_the_latency_is_the_documented_one() -> None:
    chroma = LiveChroma(SR, SR)
    latency = chroma.latency_s
    # bins counted from C1, three per semitone: G2 is 19 semitones up, E2 16, A1 9
    assert latency[3 * 19 :].max() == pytest.approx(0.093, abs=0.001)
    assert latency[3 * 16] == pytest.approx(0.105, abs=0.001)
    assert latency[3 * 9] == pytest.approx(0.157, abs=0.001)
    assert latency.max() == latency[0] == pytest.approx(0.265, abs=0.001)
    assert chroma.window_s == pytest.approx(0.53, abs=0.005)


def test_a_note_in_the_low_octave_reaches_the_live_chroma_within_its_latency() -> None:
    # silence, then A1 from 1 s: the frame half a window after the onset names A
    y = np.concatenate([np.zeros(SR, dtype=np.float32), piano_note(33, 2.0, SR)])
    live = StreamingAnalyzer(AudioConfig(), SR)
    states = live.push(y)
    latency = float(LiveChroma(SR, SR).latency_s[3 * 9])

    frame = int(np.ceil((1.0 + latency) * FPS))
    assert PITCH_CLASSES[int(np.argmax(states[frame].chroma))] == "A"
    # a frame is measured up to the hop that completes it: the one before holds the onset
    assert not states[int(FPS) - 2].chroma.any()


def test_pitch_classes_keep_the_peaks_compress_and_fold() -> None:
    n_bins = BINS_PER_OCTAVE * octaves_for(SR)
    mags = np.zeros((n_bins, 3))
    # column 0: a broad bump on E2 (bin 48) and a sharp one on E4, each counted once, at its peak
    mags[45:52, 0] = [0.2, 0.5, 0.8, 1.0, 0.8, 0.5, 0.2]
    mags[120, 0] = 1.0
    # column 1: G at full strength and C at a tenth: compression lifts C to 29 % of G
    mags[3 * 7 + 36, 1] = 1.0
    mags[36, 1] = 0.1
    # column 2: silence

    chroma = pitch_classes(mags)

    assert chroma.shape == (12, 3)
    expected_e = 2.0 * np.log1p(10.0)
    np.testing.assert_allclose(chroma[:, 0], np.eye(12)[PITCH_INDEX["E"]] * expected_e)
    assert chroma[PITCH_INDEX["C"], 1] / chroma[PITCH_INDEX["G"], 1] == pytest.approx(
        np.log1p(1.0) / np.log1p(10.0)
    )
    assert not chroma[:, 2].any()
    np.testing.assert_allclose(pitch_classes(mags[:, 1]), chroma[:, 1])


def test_normalise_frames_peaks_at_one_and_zeroes_silence() -> None:
    chroma = np.array([[2.0, 0.0, 3.0], [1.0, 0.0, 1.0]] + [[0.0, 0.0, 0.0]] * 10)

    frames = normalise_frames(chroma, rms=np.array([0.1, 0.1, 1e-6]))

    np.testing.assert_allclose(frames[:2], [[1.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    assert not frames[2:].any()

"""Write the bundled demo song: 8 s of a 120 BPM kick/snare/hat groove over four chords.

Deterministic (a fixed seed for the noise), so anyone can rebuild ``assets/demo.wav`` byte for
byte: ``python scripts/make_demo_audio.py assets/demo.wav``. The chords (C, Am, F, G, one bar
each) move the chroma; the kick on every beat gives the beat tracker an unambiguous pulse.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 22050
DURATION_S = 8.0
BPM = 120.0
SEED = 20240601

# one bar each; MIDI notes of the pad (bass an octave below the root)
CHORDS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("C", (60, 64, 67)),
    ("Am", (57, 60, 64)),
    ("F", (53, 57, 60)),
    ("G", (55, 59, 62)),
)

Signal = npt.NDArray[np.float64]


def _hz(midi: int) -> float:
    return 440.0 * math.pow(2.0, (midi - 69) / 12.0)


def _kick(sr: int) -> Signal:
    t = np.arange(int(0.25 * sr)) / sr
    # a falling pitch: 150 Hz down to 45 Hz, the phase is the integral of the frequency
    freq = 45.0 + 105.0 * np.exp(-t / 0.03)
    phase = 2.0 * np.pi * np.cumsum(freq) / sr
    return np.sin(phase) * np.exp(-t / 0.08)


def _noise_hit(rng: np.random.Generator, sr: int, length_s: float, decay_s: float) -> Signal:
    n = int(length_s * sr)
    # first difference of white noise: a crude high-pass, bright like a hat or a snare rattle
    noise = np.diff(rng.standard_normal(n + 1))
    return noise * np.exp(-np.arange(n) / (decay_s * sr))


def _pad(notes: tuple[int, ...], sr: int, length: int) -> Signal:
    t = np.arange(length) / sr
    out = np.zeros(length)
    for note in notes:
        for harmonic, gain in ((1, 1.0), (2, 0.35), (3, 0.15)):
            out += gain * np.sin(2.0 * np.pi * _hz(note) * harmonic * t)
    out += 0.8 * np.sin(2.0 * np.pi * _hz(notes[0] - 24) * t)  # bass on the root
    # soft attack and release so chord changes do not click
    ramp = min(length // 2, int(0.02 * sr))
    envelope = np.ones(length)
    envelope[:ramp] = np.linspace(0.0, 1.0, ramp)
    envelope[-ramp:] = np.linspace(1.0, 0.0, ramp)
    return out * envelope / (len(notes) + 1)


def _place(track: Signal, sound: Signal, at: int) -> None:
    end = min(track.size, at + sound.size)
    if at < end:
        track[at:end] += sound[: end - at]


def make_demo(
    sample_rate: int = SAMPLE_RATE, duration: float = DURATION_S, bpm: float = BPM
) -> Signal:
    """The demo song as float samples in [-1, 1]."""
    rng = np.random.default_rng(SEED)
    n = round(duration * sample_rate)
    beat = 60.0 / bpm
    track = np.zeros(n)
    kick = _kick(sample_rate)
    snare = _noise_hit(rng, sample_rate, 0.18, 0.045)
    beats = int(duration / beat + 1e-9)
    for b in range(beats):
        at = round(b * beat * sample_rate)
        _place(track, 0.9 * kick, at)
        if b % 2 == 1:
            _place(track, 0.35 * snare, at)
        for half in (0, 1):
            hat = _noise_hit(rng, sample_rate, 0.05, 0.012)
            _place(
                track,
                (0.12 if half == 0 else 0.2) * hat,
                at + round(half * beat / 2 * sample_rate),
            )
    bar = round(4 * beat * sample_rate)
    for i, start in enumerate(range(0, n, bar)):
        _, notes = CHORDS[i % len(CHORDS)]
        length = min(bar, n - start)
        track[start : start + length] += 0.45 * _pad(notes, sample_rate, length)
    return 0.9 * track / float(np.max(np.abs(track)))


def main(argv: list[str] | None = None) -> int:
    """Write the demo song as 16-bit mono WAV."""
    import soundfile as sf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default="assets/demo.wav", help="where to write it")
    args = parser.parse_args(argv)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out), make_demo(), SAMPLE_RATE, subtype="PCM_16")
    print(f"wrote {out} ({out.stat().st_size} bytes, {DURATION_S:g} s at {SAMPLE_RATE} Hz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

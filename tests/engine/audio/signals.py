"""Synthesised test signals with known answers: click tracks, tones, chords, piano-like music with
known notes, and file writers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.float32]

PITCH_INDEX = {"C": 0, "C#": 1, "D": 2, "D#": 3, "E": 4, "F": 5, "F#": 6, "G": 7, "G#": 8, "A": 9}
PITCH_INDEX.update({"A#": 10, "B": 11})


def midi_hz(note: int) -> float:
    """Frequency of a MIDI note (69 = A4 = 440 Hz)."""
    return 440.0 * math.pow(2.0, (note - 69) / 12.0)


def click_track(
    bpm: float, duration: float, sr: int, offset: float = 0.25, amplitude: float = 0.8
) -> tuple[Samples, npt.NDArray[np.float64]]:
    """Short decaying 1 kHz bursts on every beat; returns the samples and the beat times (s)."""
    y = np.zeros(round(duration * sr), dtype=np.float32)
    times = np.arange(offset, duration - 0.05, 60.0 / bpm)
    n = np.arange(int(0.03 * sr))
    burst = (np.sin(2 * np.pi * 1000.0 * n / sr) * np.exp(-n / (0.005 * sr))).astype(np.float32)
    for t in times:
        start = round(t * sr)
        segment = y[start : start + burst.size]
        segment += amplitude * burst[: segment.size]
    return y, times


def tones(freqs: list[float], duration: float, sr: int, amplitude: float = 0.3) -> Samples:
    """A sum of sines, each at ``amplitude``."""
    t = np.arange(round(duration * sr)) / sr
    out = sum(amplitude * np.sin(2 * np.pi * f * t) for f in freqs)
    return np.asarray(out, dtype=np.float32)


def chord(notes: list[int], duration: float, sr: int) -> Samples:
    """A chord of MIDI notes as plain sines."""
    return tones([midi_hz(n) for n in notes], duration, sr, amplitude=0.25)


def piano_note(
    note: int,
    duration: float,
    sr: int,
    amplitude: float = 0.3,
    harmonics: int = 8,
    decay_s: float = 1.2,
    detune_cents: float = 0.0,
) -> Samples:
    """A piano-like MIDI note: ``harmonics`` partials at ``1/k`` of the fundamental, partial ``k``
    dying away ``k`` times faster (``exp(-k t / decay_s)``), a 5 ms attack and a 20 ms release.

    Low notes (E2, A1, C2) of this kind are what a coarse FFT chroma credits to the fifth: the
    third partial is resolved, the fundamental is not. ``detune_cents`` shifts the tuning.
    """
    t = np.arange(round(duration * sr)) / sr
    f0 = midi_hz(note) * 2.0 ** (detune_cents / 1200.0)
    out = np.zeros(t.size)
    for k in range(1, harmonics + 1):
        if k * f0 < sr / 2:
            out += np.exp(-k * t / decay_s) * np.sin(2 * np.pi * k * f0 * t) / k
    envelope = np.clip(np.minimum(t / 0.005, (duration - t) / 0.02), 0.0, 1.0)
    return np.asarray(amplitude * out * envelope, dtype=np.float32)


def piano_chord(notes: list[int], duration: float, sr: int, detune_cents: float = 0.0) -> Samples:
    """Piano-like notes (:func:`piano_note`) struck together."""
    struck = [piano_note(n, duration, sr, detune_cents=detune_cents) for n in notes]
    return np.asarray(np.sum(struck, axis=0), dtype=np.float32)


def triad_with_bass(root: int, minor: bool = False) -> list[int]:
    """A root-position triad on MIDI ``root`` with its bass note doubled an octave below."""
    return [root - 12, root, root + (3 if minor else 4), root + 7]


def progression(
    chords: list[list[int]], seconds: float, sr: int, detune_cents: float = 0.0
) -> Samples:
    """Piano-like chords one after the other, each ``seconds`` long."""
    return np.concatenate([piano_chord(c, seconds, sr, detune_cents) for c in chords])


def dominant_hz(y: Samples, sr: int) -> float:
    """The frequency of the strongest FFT bin."""
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.argmax(spectrum) * sr / y.size)


def write_audio(path: Path, samples: npt.NDArray[np.floating], sr: int) -> Path:
    """Write ``(n,)`` or ``(n, channels)`` samples; the suffix picks the format.

    wav, flac and ogg go through libsndfile; mp3 and m4a (AAC) are encoded with ffmpeg via PyAV.
    """
    data = np.asarray(samples, dtype=np.float32)
    suffix = path.suffix.lower()
    if suffix in (".wav", ".flac", ".ogg"):
        import soundfile as sf

        subtype = {".wav": "PCM_16", ".flac": "PCM_16", ".ogg": "VORBIS"}[suffix]
        sf.write(str(path), data, sr, subtype=subtype)
        return path
    codec = {".mp3": "libmp3lame", ".m4a": "aac"}[suffix]
    _encode_pyav(path, data, sr, codec)
    return path


def _encode_pyav(path: Path, data: Samples, sr: int, codec: str) -> None:
    import av

    planar = np.ascontiguousarray(data.reshape(data.shape[0], -1).T)
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sr, layout=layout)
        assert isinstance(stream, av.AudioStream)
        frame_size = 1152 if codec == "libmp3lame" else 1024
        for start in range(0, planar.shape[1], frame_size):
            chunk = np.ascontiguousarray(planar[:, start : start + frame_size])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = sr
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)

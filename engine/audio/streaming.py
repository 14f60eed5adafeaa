"""Online music features: audio blocks in, one ``MusicState`` per video frame out.

The analyzer hops through the audio (``config.hop_length`` at ``config.sample_rate``, scaled
to the input's rate so a hop lasts the same time) and for each hop takes one windowed FFT of the
last ``n_fft`` samples: band loudness and a mel spectral flux (onset strength) come from that
one spectrum. Chroma comes from ``engine.audio.chroma.LiveChroma``: the offline analysis's
constant-Q transform made causal (decimated windows up to 0.53 s long, measured once per video
frame on the audio up to the hop that completes it), reduced and normalised by the same functions
as offline. Its filters end at the newest sample, so a bin lags by half its filter: at most 93 ms
from G2 up, 105 ms at E2, 157 ms at A1, 265 ms at C1. Tempo comes from the autocorrelation of the
recent onset history; beats from a predict-and-correct phase tracker: it fires each beat when the
predicted time arrives (no waiting for the onset, so no detection latency) and nudges its phase
towards where a comb over the onset history finds the beats.

Frame ``i`` covers audio ``[i / fps, (i + 1) / fps)``; it is emitted by the ``push`` that
carries the audio past its end, so nothing looks ahead beyond the block at hand. Loudness and
onset are normalised online by a running peak with a slow decay, so they stay in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.audio.chroma import LiveChroma, normalise_frames
from engine.audio.spectrum import (
    SILENCE_RMS,
    band_matrix,
    hann_window,
    refine_peak,
    tempo_log_prior,
)
from engine.audio.types import MusicState
from engine.config import AudioConfig
from engine.errors import AudioError

# seconds for a running peak to decay by half: slow, so a quiet verse reads quieter than a chorus
PEAK_HALF_LIFE_S = 8.0
# seconds of onset history behind the tempo and phase estimates
HISTORY_S = 8.0
# least history before a tempo is trusted, in periods of the slowest tempo
MIN_HISTORY_PERIODS = 2.5
# seconds between tempo re-estimates
TEMPO_EVERY_S = 0.25
# autocorrelation at the best lag below this share of the zero lag: no steady pulse
MIN_PULSE_CLARITY = 0.1
# a new tempo this far (relative) from the tracked one re-locks the phase instead of gliding
RELOCK_RATIO = 0.08
# share of the tempo and phase errors corrected per estimate
TEMPO_GAIN = 0.3
PHASE_GAIN = 0.5
# periods of onset history the phase comb sums over, with weights halving every this many
COMB_PERIODS = 8
COMB_HALF_LIFE_PERIODS = 4.0
# a comb beat further than this share of a period from the prediction is an outlier ...
PHASE_OUTLIER = 0.2
# ... and this many outliers in a row re-lock the phase to the comb
PHASE_RELOCK_MISSES = 3
# lose the lock when the last two periods carry less onset than this share of the running peak
SUPPORT_SHARE = 0.05
# the mel spectrum the flux is taken on is floored this far (-80 dB) below its running peak
FLUX_FLOOR = 1e-8
N_MELS = 128
# onset smoothing before the autocorrelation
_SMOOTHING = np.array([0.25, 0.5, 0.25])


@dataclass
class _FrameAccumulator:
    """Running sums of the hops that fall in the frame being built."""

    hops: int = 0
    energy: float = 0.0
    rms: float = 0.0
    onset: float = 0.0
    bands: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(3))

    def clear(self) -> None:
        self.hops = 0
        self.energy = self.rms = self.onset = 0.0
        self.bands[:] = 0.0


class StreamingAnalyzer:
    """Turns mono float32 audio blocks of any length into one ``MusicState`` per video frame.

    ``push(block)`` returns the frames the block completed; ``latest()`` the last state (a silent
    one before any audio); ``reset()`` forgets everything. Not thread-safe: one consumer feeds it.
    """

    def __init__(self, config: AudioConfig, sample_rate: int) -> None:
        import librosa  # filterbanks only, built once: the hot path is numpy
        import scipy.fft
        import scipy.sparse

        if sample_rate <= 0:
            raise AudioError(f"streaming analyzer: sample rate must be positive, got {sample_rate}")
        self.config = config
        self.sample_rate = int(sample_rate)
        self.fps = float(config.fps)
        scale = sample_rate / config.sample_rate
        self.hop_length = max(16, round(config.hop_length * scale))
        self.n_fft = max(self.hop_length, 2 ** round(math.log2(max(config.n_fft * scale, 32))))
        if config.band_edges[1] >= sample_rate / 2:
            raise AudioError(
                f"streaming analyzer: band edge {config.band_edges[1]} Hz is above the Nyquist "
                f"frequency of {sample_rate} Hz input"
            )
        self._hop_s = self.hop_length / sample_rate
        self._rfft = scipy.fft.rfft  # the same transform as numpy's, with less overhead per call
        self._window = hann_window(self.n_fft)
        self._bands = band_matrix(sample_rate, self.n_fft, config.band_edges, self._window)
        # the mel bands stop where the offline analysis (at config.sample_rate) stops, so a 48 kHz
        # input's air band does not outweigh the kick in the onset strength
        fmax = min(sample_rate, config.sample_rate) / 2.0
        # sparse: each mel band covers a few FFT bins, so the product costs a third of a dense one
        self._mel = scipy.sparse.csr_array(
            librosa.filters.mel(sr=sample_rate, n_fft=self.n_fft, n_mels=N_MELS, fmax=fmax).astype(
                np.float32
            )
        )
        self._chroma = LiveChroma(sample_rate, config.sample_rate)
        self._decay = 0.5 ** (self._hop_s / PEAK_HALF_LIFE_S)
        self._history_len = round(HISTORY_S / self._hop_s)
        self._min_history = math.ceil(MIN_HISTORY_PERIODS * 60.0 / config.tempo_min / self._hop_s)
        self._tempo_every = max(1, round(TEMPO_EVERY_S / self._hop_s))
        lags = np.arange(1, self._history_len, dtype=np.float64)
        self._lag_prior = tempo_log_prior(
            60.0 / (lags * self._hop_s), config.tempo_min, config.tempo_max
        )
        self._silent_chroma = np.zeros(12, dtype=np.float32)
        self.reset()

    # state

    def reset(self) -> None:
        """Forget all audio: the next push starts at time 0, frame 0."""
        self._chroma.reset()
        self._frame_buf = np.zeros(self.n_fft, dtype=np.float32)
        self._windowed = np.zeros(self.n_fft, dtype=np.float32)
        self._pending = np.zeros(self.hop_length, dtype=np.float32)
        self._pending_len = 0
        self._samples = 0
        self._hops = 0
        # float32 at run time; numpy's stubs widen a float32 array divided by a float to float64
        self._prev_db: npt.NDArray[np.floating[Any]] | None = None
        self._peak_rms = 0.0
        self._peak_bands = np.zeros(3)
        self._peak_onset = 0.0
        self._peak_mel = 0.0
        self._history = np.zeros(self._history_len, dtype=np.float64)
        self._acc = _FrameAccumulator()
        self._last_hop: tuple[float, float, float, npt.NDArray[np.float64]]
        self._last_hop = (0.0, 0.0, 0.0, np.zeros(3))
        self._frame = 0
        # tempo and beat tracking
        self._period = 0.0  # seconds per beat; 0 until a tempo is found
        self._locked = False
        self._phase_misses = 0
        self._next_beat = 0.0  # audio time of the next predicted beat
        self._last_fired = -math.inf
        self._beat_count = 0
        self._last_beat_frame = -1
        self._beat_frames: list[int] = []  # frames of fired beats not yet emitted
        self._latest = self._silent_state(0)

    @property
    def time(self) -> float:
        """Seconds of audio pushed so far."""
        return self._samples / self.sample_rate

    @property
    def tempo(self) -> float:
        """The running tempo estimate in BPM (0 before one is found)."""
        return 60.0 / self._period if self._period > 0 else 0.0

    def beat_grid(self) -> tuple[float, float] | None:
        """``(period, next_beat)`` in seconds of audio time while the beat is locked, else None.

        The tracker's own grid, finer than the frames it fires into (what a Link leader
        publishes).
        """
        period, next_beat = self._period, self._next_beat
        if not self._locked or period <= 0:
            return None
        return period, next_beat

    def latest(self) -> MusicState:
        """The most recent frame's state; a silent frame 0 before any audio."""
        return self._latest

    # input

    def push(self, block: npt.ArrayLike) -> list[MusicState]:
        """Feed audio (mono, or ``(n, channels)`` which is averaged); get the frames it completed."""
        samples = np.asarray(block, dtype=np.float32)
        if samples.ndim == 2:
            samples = samples.mean(axis=1, dtype=np.float32)
        if samples.ndim != 1:
            raise AudioError(
                f"streaming analyzer: expected a mono block, got shape {samples.shape}"
            )
        if not np.isfinite(samples).all():
            samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
        frames: list[MusicState] = []
        start = 0
        while start < samples.size:
            take = min(self.hop_length - self._pending_len, samples.size - start)
            self._pending[self._pending_len : self._pending_len + take] = samples[
                start : start + take
            ]
            self._pending_len += take
            start += take
            if self._pending_len == self.hop_length:
                self._pending_len = 0
                self._process_hop()
                self._emit_frames(frames)
        return frames

    # hot path: one hop

    def _process_hop(self) -> None:
        hop = self.hop_length
        buf = self._frame_buf
        buf[:-hop] = buf[hop:]
        buf[-hop:] = self._pending
        self._samples += hop
        self._hops += 1
        np.multiply(buf, self._window, out=self._windowed)
        spectrum = self._rfft(self._windowed)
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)

        band_ms = self._bands @ power
        bands = np.sqrt(band_ms.astype(np.float64))
        rms = float(np.sqrt(band_ms.sum()))
        mel = self._mel @ power
        # dB against the running peak, floored 80 dB below it: librosa's ref=max, top_db=80, online
        self._peak_mel = max(float(mel.max()), self._peak_mel * self._decay)
        floor = max(self._peak_mel, 1e-30) * FLUX_FLOOR
        mel_db = 10.0 * np.log10(np.maximum(mel, floor) / floor)
        flux = 0.0
        if self._prev_db is not None and rms >= SILENCE_RMS:
            flux = float(np.maximum(mel_db - self._prev_db, 0.0).mean())
        self._prev_db = mel_db
        self._chroma.feed(self._pending)

        decay = self._decay
        self._peak_rms = max(rms, self._peak_rms * decay)
        self._peak_bands = np.maximum(bands, self._peak_bands * decay)
        self._peak_onset = max(flux, self._peak_onset * decay)
        energy = rms / max(self._peak_rms, SILENCE_RMS)
        onset = flux / self._peak_onset if self._peak_onset > 0 else 0.0
        band_norm = bands / np.maximum(self._peak_bands, SILENCE_RMS)

        self._history[:-1] = self._history[1:]
        self._history[-1] = flux
        acc = self._acc
        acc.hops += 1
        acc.energy += energy
        acc.rms += rms
        acc.onset = max(acc.onset, onset)
        acc.bands += band_norm
        self._last_hop = (energy, rms, onset, band_norm)

        if self._hops % self._tempo_every == 0:
            self._update_tempo()
        self._fire_beats()

    # tempo and beats

    def _update_tempo(self) -> None:
        """Re-estimate the period from the onset autocorrelation and correct the beat phase."""
        filled = min(self._hops, self._history_len)
        if filled < self._min_history:
            return
        history = self._history[-filled:]
        support = history[-int(2 * self._period / self._hop_s) :] if self._period > 0 else history
        if float(support.max()) < SUPPORT_SHARE * self._peak_onset or self._peak_onset <= 0:
            self._locked = False
            return
        # smoothed over three hops: a peak split between two hops still lines up with a lag
        smooth = np.convolve(history, _SMOOTHING, mode="same")
        period_hops = self._autocorrelation_period(smooth)
        if period_hops is None:
            self._locked = False
            return
        period = period_hops * self._hop_s
        if not self._locked or abs(period - self._period) > RELOCK_RATIO * self._period:
            self._lock(period, self._comb_beat(smooth, period_hops))
            return
        self._period += TEMPO_GAIN * (period - self._period)
        found = self._comb_beat(smooth, self._period / self._hop_s)
        # the phase error, wrapped into half a period either side of the prediction
        error = (found - self._next_beat + self._period / 2) % self._period - self._period / 2
        if abs(error) > PHASE_OUTLIER * self._period:
            # one comb that prefers the off-beat is noise; several in a row mean the lock was wrong
            self._phase_misses += 1
            if self._phase_misses >= PHASE_RELOCK_MISSES:
                self._lock(self._period, found)
            return
        self._phase_misses = 0
        self._next_beat = max(
            self._next_beat + PHASE_GAIN * error, self._last_fired + self._period / 2
        )

    def _lock(self, period: float, beat: float) -> None:
        """(Re)start tracking: this period, the grid through this beat, next beat after now."""
        self._period = period
        self._next_beat = max(self._beat_after(beat, self.time), self._last_fired + period / 2)
        self._locked = True
        self._phase_misses = 0

    def _autocorrelation_period(self, onsets: npt.NDArray[np.float64]) -> float | None:
        """The beat period in hops (fractional), or None when the onsets show no steady pulse.

        Like librosa's tempogram: the (smoothed) onsets are tapered by a Hann window, which
        favours the shorter of two equally periodic lags, and the prior picks among octaves.
        """
        x = (onsets - onsets.mean()) * np.hanning(onsets.size)
        n = x.size
        size = 1 << (2 * n - 1).bit_length()
        spectrum = np.fft.rfft(x, size)
        ac = np.fft.irfft(spectrum.real**2 + spectrum.imag**2, size)[:n]
        if ac[0] <= 0:
            return None
        lags = ac[1:n] / ac[0]
        score = np.log1p(1e6 * np.maximum(lags, 0.0)) + self._lag_prior[: n - 1]
        best = int(np.argmax(score))
        if not np.isfinite(score[best]) or lags[best] < MIN_PULSE_CLARITY:
            return None
        return 1.0 + refine_peak(lags, best)

    def _comb_beat(self, history: npt.NDArray[np.float64], period_hops: float) -> float:
        """Audio time of the latest beat in the history, by a comb over the onset envelope.

        Each candidate offset back from the newest hop sums the onsets one, two, ... periods
        further back (recent periods weigh more); the best offset, refined to a fraction of a
        hop, is the latest beat. Onsets are stamped at the end of their window, like librosa's.
        """
        n = history.size
        offsets = np.arange(math.ceil(period_hops), dtype=np.float64)
        periods = min(COMB_PERIODS, max(1, int((n - offsets[-1] - 1) // period_hops)))
        k = np.arange(periods, dtype=np.float64)
        index = np.rint(n - 1 - offsets[:, None] - k[None, :] * period_hops).astype(np.int64)
        weights = 0.5 ** (k / COMB_HALF_LIFE_PERIODS)
        score = (history[np.clip(index, 0, n - 1)] * weights).sum(axis=1)
        # the comb wraps around: pad so a peak at offset 0 can still be refined
        padded = np.concatenate([score[-1:], score, score[:1]])
        offset = refine_peak(padded, int(np.argmax(score)) + 1) - 1
        return self.time - offset * self._hop_s

    def _beat_after(self, beat: float, now: float) -> float:
        """The first beat of the grid through ``beat`` that falls after ``now``."""
        steps = math.floor((now - beat) / self._period) + 1
        return beat + steps * self._period

    def _fire_beats(self) -> None:
        """Fire the predicted beats whose time has come, into the frame their time falls in."""
        if not self._locked:
            return
        now = self.time
        while self._next_beat <= now:
            self._beat_frames.append(
                max(self._frame, math.floor(self._next_beat * self.fps + 1e-9))
            )
            self._last_fired = self._next_beat
            self._next_beat += self._period

    # output

    def _emit_frames(self, out: list[MusicState]) -> None:
        while (self._frame + 1) / self.fps <= self.time + 1e-9:
            out.append(self._build_state())
            self._acc.clear()
            self._frame += 1

    def _build_state(self) -> MusicState:
        acc = self._acc
        if acc.hops:
            n = acc.hops
            energy, rms, onset = acc.energy / n, acc.rms / n, acc.onset
            bands = acc.bands / n
        else:  # frames shorter than a hop repeat the last hop
            energy, rms, onset, bands = self._last_hop
        frame = self._frame
        # beats are counted when their frame goes out, so a frame never counts a later beat
        due = 0
        while due < len(self._beat_frames) and self._beat_frames[due] <= frame:
            due += 1
        del self._beat_frames[:due]
        beat = due > 0
        if beat:
            self._beat_count += due
            self._last_beat_frame = frame
        # measured once per frame, on the audio up to the hop that completes it
        chroma = normalise_frames(self._chroma.measure(), rms).astype(np.float32)
        state = MusicState(
            frame=frame,
            time=frame / self.fps,
            energy=_unit(energy),
            onset=_unit(onset),
            beat=beat,
            beat_phase=self._phase(frame),
            beat_count=self._beat_count,
            tempo=self.tempo,
            chroma=chroma,
            low=_unit(bands[0]),
            mid=_unit(bands[1]),
            high=_unit(bands[2]),
        )
        self._latest = state
        return state

    def _phase(self, frame: int) -> float:
        """0 on the beat's frame, rising towards 1 at the next beat; 0 without a lock."""
        if not self._locked or self._last_beat_frame < 0 or self._period <= 0:
            return 0.0
        span = self._period * self.fps
        return min(max((frame - self._last_beat_frame) / span, 0.0), 1.0 - 1e-6)

    def _silent_state(self, frame: int) -> MusicState:
        return MusicState(
            frame=frame,
            time=frame / self.fps,
            energy=0.0,
            onset=0.0,
            beat=False,
            beat_phase=0.0,
            beat_count=0,
            tempo=0.0,
            chroma=self._silent_chroma,
        )


def _unit(value: float) -> float:
    """``value`` clamped into [0, 1] as a Python float (np.clip costs microseconds on a scalar)."""
    return min(max(float(value), 0.0), 1.0)

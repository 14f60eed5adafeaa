"""Constant-Q chroma, the same offline and live: which pitch classes sound, frame by frame.

Both analyses measure the magnitude of one constant-Q transform (C1 to B7, 36 bins per octave,
librosa's Hann filters and scaling) and reduce it with the same two functions:

- :func:`pitch_classes`, per measurement: keep the spectral peaks (a note's own bin, not the
  skirts of its filter), compress them logarithmically against the strongest one (a loud bass
  note does not drown the chord above it) and fold the octaves onto C..B;
- :func:`normalise_frames`, per video frame: the strongest pitch class is 1, silent frames 0.

Offline the transform is :func:`librosa.cqt`, centred windows up to 1.6 s long in the lowest
octave, measured every hop and averaged per video frame. Live it is :class:`LiveChroma`: the
same filters, precomputed once as frequency-domain kernels, applied to one FFT of the newest
audio per stage each time a video frame is due. Two stages: the input decimated to about 11 kHz
for every bin from G2 up (a 186 ms window, :data:`LIVE_WINDOW_S`), decimated again to about
850 Hz for the bins below, whose filters keep a third of their constant-Q length, a semitone's
bandwidth, so that a low note still lands on its own semitone (E2 apart from F2, A1 from A#1).
The live filters are causal: each ends at the newest sample.

Tuning: the live path reads its bins at the song's running tuning estimate (:class:`LiveChroma`
``tuning``); the offline bins stay at concert pitch. Each pitch class gathers three bins, so a
detuned song still lands on its own pitch classes on both paths: on the tests' minor
progression detuned by 0, +-15, 30, 40 and +-45 cents the two paths agree on
94-97 % of frames whether or not the offline transform is tuned (``librosa.estimate_tuning``
would add 1.2 s to a three-minute song's analysis).

Latency: a filter ending now sees a note on average half its length late, so a bin's chroma lags
by half its filter: at most 93 ms from G2 (98 Hz) up, 105 ms at E2, 157 ms at A1 and 265 ms at C1
(the longest window, 0.53 s); the decimation filters add 1 to 4 ms. ``LiveChroma.latency_s``
gives it per bin. The prompt blend smooths the frames of both paths with the same
``engine.prompt`` ``ChromaSmoother``, so one song gives the same blend weights on both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.audio.spectrum import SILENCE_RMS
from engine.errors import AudioError

Float64Array = npt.NDArray[np.float64]
Complex64Array = npt.NDArray[np.complex64]

# chroma starts on a C so that bins fall on pitch classes; three bins per semitone
CQT_FMIN_HZ = 32.70319566257483
BINS_PER_OCTAVE = 36
MAX_OCTAVES = 7
N_CHROMA = 12
# log compression: a peak at a tenth of the hop's strongest one keeps 29 % of its weight, not 10 %
COMPRESSION = 10.0
# the live filters are at most this long ...
LIVE_WINDOW_S = 4096 / 22050
# ... except the lowest ones, which keep this share of their constant-Q length: 1/3 of a filter
# 1/36 octave wide is 1/12 octave, one semitone
SEMITONE_SHARE = 1.0 / 3.0
# the live transform runs at the input rate divided by the largest integer that keeps it above this
MIN_LIVE_RATE = 11025.0
# the low bins' stage runs at least this many times their top frequency (a short decimation filter)
LOW_STAGE_HEADROOM = 8.0
# anti-alias filter of the decimation: attenuation (dB) in the band that would fold onto the bins
DECIMATION_ATTENUATION_DB = 60.0
# a frequency-domain kernel keeps the band of FFT bins carrying this share of its magnitude
# (librosa keeps 99 % offline; 95 % halves the live product, the blend weights hardly move)
KERNEL_MASS = 0.95
# tuning: seconds for the evidence to decay by half, and the least clarity of a tuning estimate
TUNING_HALF_LIFE_S = 10.0
MIN_TUNING_CLARITY = 0.05
# measurements between tuning updates (tuning drifts slowly; half a second at 24 fps)
TUNING_EVERY = 12


def octaves_for(sample_rate: float) -> int:
    """How many octaves from C1 the transform covers at ``sample_rate`` (at most 7: C1 to B7)."""
    return int(min(MAX_OCTAVES, math.floor(math.log2(0.45 * sample_rate / CQT_FMIN_HZ))))


def bin_frequencies(n_bins: int) -> Float64Array:
    """Centre frequencies (Hz) of the first ``n_bins`` bins, in tune (A4 at 440 Hz)."""
    return CQT_FMIN_HZ * 2.0 ** (np.arange(n_bins) / BINS_PER_OCTAVE)


def filter_lengths(n_bins: int, sample_rate: float) -> Float64Array:
    """The constant-Q filter lengths (samples at ``sample_rate``) librosa uses for these bins."""
    import librosa

    lengths, _ = librosa.filters.wavelet_lengths(
        freqs=bin_frequencies(n_bins), sr=sample_rate, window="hann", filter_scale=1
    )
    return np.asarray(lengths, dtype=np.float64)


@cache
def _fold(n_bins: int) -> npt.NDArray[np.float64]:
    """The ``(12, n_bins)`` matrix that sums each pitch class's bins over the octaves."""
    import librosa

    matrix = librosa.filters.cq_to_chroma(
        n_bins, bins_per_octave=BINS_PER_OCTAVE, n_chroma=N_CHROMA, fmin=CQT_FMIN_HZ
    )
    matrix = np.asarray(matrix, dtype=np.float64)
    matrix.setflags(write=False)
    return matrix


def pitch_classes(magnitudes: npt.ArrayLike) -> Float64Array:
    """Constant-Q magnitudes ``(n_bins, ...)`` to pitch-class weights ``(12, ...)``, per hop.

    Only local maxima along the bins count (a short live filter spreads a low note over several
    bins, a long offline one does not: their peaks agree), compressed as
    ``log(1 + COMPRESSION * peak / strongest peak)`` and summed per pitch class over the octaves.
    Silent hops stay 0.
    """
    mags = np.asarray(magnitudes, dtype=np.float64)
    if mags.ndim == 0 or mags.shape[0] % BINS_PER_OCTAVE:
        raise AudioError(
            f"chroma: expected whole octaves of {BINS_PER_OCTAVE} bins, got shape {mags.shape}"
        )
    peaks = mags.copy()
    # a bin below either neighbour is a filter's skirt, not a note
    np.putmask(peaks[1:], mags[1:] < mags[:-1], 0.0)
    np.putmask(peaks[:-1], mags[:-1] < mags[1:], 0.0)
    strongest = peaks.max(axis=0)
    scale = COMPRESSION / np.where(strongest > 0, strongest, 1.0)
    return _fold(mags.shape[0]) @ np.log1p(peaks * scale)


def normalise_frames(chroma: npt.ArrayLike, rms: npt.ArrayLike) -> Float64Array:
    """Video-frame chroma ``(12, ...)`` scaled so each frame's maximum is 1; silent frames 0.

    A frame is silent when its RMS (``rms``, one per frame) is below ``SILENCE_RMS`` or it has
    no pitch at all.
    """
    values = np.asarray(chroma, dtype=np.float64)
    level = np.asarray(rms, dtype=np.float64)
    if values.ndim == 1:  # one frame (the live path): scalars are quicker
        peak = float(values.max())
        if float(level) >= SILENCE_RMS and peak > 0:
            return values / peak
        return np.zeros_like(values)
    peak_row = values.max(axis=0)
    audible = (level >= SILENCE_RMS) & (peak_row > 0)
    return np.where(audible, values / np.where(audible, peak_row, 1.0), 0.0)


@dataclass(frozen=True, eq=False)
class _Stage:
    """One sample rate of the live transform: how to get there, its FFT, the bins it measures."""

    factor: int  # decimation from the previous stage's samples (the input's for the first)
    taps: npt.NDArray[np.float32]  # the anti-alias filter, reversed; one tap when factor is 1
    rate: float
    n_fft: int
    bins: npt.NDArray[np.intp]  # which bins of the transform this stage measures
    index: npt.NDArray[np.intp]  # FFT bins of every kernel row, concatenated
    kernel: Complex64Array  # their coefficients
    starts: npt.NDArray[np.intp]  # where each measured bin's row starts


@dataclass(frozen=True, eq=False)
class _Plan:
    """What a live transform precomputes once per pair of rates (shared by every analyzer).

    The stages' kernels are merged into one sparse matrix over their spectra laid end to end,
    rows in bin order, so that a measurement is one sparse product.
    """

    n_bins: int
    stages: tuple[_Stage, ...]
    full_q: npt.NDArray[np.bool_]  # bins whose live filter is as long as the offline one
    latency_s: Float64Array  # per bin; 0 for bins above the input's Nyquist frequency
    bins: npt.NDArray[np.intp]  # the bins measured, ascending
    kernel: Any  # scipy.sparse.csr_array (bins x concatenated spectra), complex64


@cache
def _plan(input_rate: float, analysis_rate: float) -> _Plan:
    """Two rates: the input decimated to about 11 kHz for every bin whose filter fits the live
    window, and that signal decimated again for the long, low bins (a short FFT each)."""
    n_bins = BINS_PER_OCTAVE * octaves_for(analysis_rate)
    freqs = bin_frequencies(n_bins)
    offline_s = filter_lengths(n_bins, analysis_rate) / analysis_rate
    live_s = np.minimum(offline_s, np.maximum(LIVE_WINDOW_S, SEMITONE_SHARE * offline_s))
    # a filter's main lobe reaches 2 / length above its centre
    top_hz = freqs + 2.0 / live_s
    factor = max(1, int(input_rate // MIN_LIVE_RATE))
    rate = input_rate / factor
    audible = top_hz < 0.5 * rate
    if not audible.any():
        raise AudioError(f"live chroma: {input_rate:g} Hz input is too slow for any chroma bin")
    # librosa's scale=True: a sine's magnitude grows with the square root of the offline length
    weights = np.sqrt(offline_s)
    short = audible & (live_s <= LIVE_WINDOW_S * (1.0 + 1e-9))
    long = audible & ~short
    stages = [_stage(input_rate, factor, np.flatnonzero(short), freqs, live_s, top_hz, weights)]
    if long.any():
        low_factor = max(1, int(rate // (LOW_STAGE_HEADROOM * float(top_hz[long].max()))))
        stages.append(
            _stage(rate, low_factor, np.flatnonzero(long), freqs, live_s, top_hz, weights)
        )
    bins, kernel = _merge(stages)
    return _Plan(
        n_bins=n_bins,
        stages=tuple(stages),
        full_q=audible & (live_s >= offline_s * (1.0 - 1e-9)),
        latency_s=np.where(audible, live_s / 2.0, 0.0),
        bins=bins,
        kernel=kernel,
    )


def _merge(stages: list[_Stage]) -> tuple[npt.NDArray[np.intp], Any]:
    """The stages' kernel rows as one sparse matrix over their concatenated spectra."""
    import scipy.sparse

    rows: list[tuple[int, npt.NDArray[np.intp], Complex64Array]] = []
    offset = 0
    for stage in stages:
        ends = [*stage.starts[1:], stage.index.size]
        for b, start, end in zip(stage.bins, stage.starts, ends, strict=True):
            rows.append((int(b), stage.index[start:end] + offset, stage.kernel[start:end]))
        offset += stage.n_fft // 2 + 1
    rows.sort(key=lambda row: row[0])
    indptr = np.concatenate([[0], np.cumsum([row[1].size for row in rows])])
    matrix = scipy.sparse.csr_array(
        (
            np.concatenate([row[2] for row in rows]),
            np.concatenate([row[1] for row in rows]),
            indptr,
        ),
        shape=(len(rows), offset),
    )
    return np.array([row[0] for row in rows], dtype=np.intp), matrix


def _stage(
    input_rate: float,
    factor: int,
    bins: npt.NDArray[np.intp],
    freqs: Float64Array,
    live_s: Float64Array,
    top_hz: Float64Array,
    weights: Float64Array,
) -> _Stage:
    rate = input_rate / factor
    passband = float(top_hz[bins].max())
    n_fft = _fast_len(math.ceil(float(live_s[bins].max()) * rate))
    index, kernel, starts = _kernel(freqs[bins], live_s[bins] * rate, weights[bins], rate, n_fft)
    return _Stage(
        factor=factor,
        taps=_decimation_taps(input_rate, factor, passband),
        rate=rate,
        n_fft=n_fft,
        bins=bins,
        index=index,
        kernel=kernel,
        starts=starts,
    )


def _decimation_taps(input_rate: float, factor: int, passband_hz: float) -> npt.NDArray[np.float32]:
    """A Kaiser low-pass that keeps ``passband_hz`` and removes what would fold onto it."""
    if factor == 1:
        return np.ones(1, dtype=np.float32)
    import scipy.signal

    # whatever lies above this folds onto the passband when every factor-th sample is kept
    stopband_hz = input_rate / factor - passband_hz
    width = (stopband_hz - passband_hz) / (input_rate / 2.0)
    numtaps, beta = scipy.signal.kaiserord(DECIMATION_ATTENUATION_DB, width)
    taps = scipy.signal.firwin(
        numtaps | 1, (passband_hz + stopband_hz) / 2.0, window=("kaiser", beta), fs=input_rate
    )
    # reversed once, so that each output is a plain dot product with the newest samples
    return np.ascontiguousarray(taps[::-1], dtype=np.float32)


def _kernel(
    freqs: Float64Array, lengths: Float64Array, weights: Float64Array, rate: float, n_fft: int
) -> tuple[npt.NDArray[np.intp], Complex64Array, npt.NDArray[np.intp]]:
    """Each bin's filter as the band of FFT bins where its spectrum lies (sparse rows).

    The filter (a Hann-windowed complex sinusoid of ``lengths`` samples summing to 1, times the
    bin's weight) ends at the newest sample of the buffer; by Parseval its response to the buffer
    is ``X . conj(H) / n_fft`` over the FFT ``X`` of the buffer.
    """
    index: list[npt.NDArray[np.intp]] = []
    values: list[Complex64Array] = []
    starts: list[int] = []
    count = 0
    for freq, span, weight in zip(freqs, lengths, weights, strict=True):
        length = min(n_fft, math.ceil(float(span)))
        n = np.arange(length, dtype=np.float64)
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * (n + 0.5) / length)
        taps = np.zeros(n_fft, dtype=np.complex128)
        taps[n_fft - length :] = window * np.exp(2j * np.pi * freq * (n - length / 2.0) / rate)
        taps *= weight / window.sum()
        row = np.conj(np.fft.fft(taps)[: n_fft // 2 + 1]) / n_fft
        lo, hi = _band(np.abs(row), KERNEL_MASS)
        index.append(np.arange(lo, hi, dtype=np.intp))
        values.append(row[lo:hi].astype(np.complex64))
        starts.append(count)
        count += hi - lo
    return np.concatenate(index), np.concatenate(values), np.asarray(starts, dtype=np.intp)


def _band(magnitude: Float64Array, mass: float) -> tuple[int, int]:
    """The run of bins spanning the largest values that together hold ``mass`` of the total."""
    order = np.argsort(magnitude)[::-1]
    held = np.cumsum(magnitude[order])
    keep = order[: int(np.searchsorted(held, mass * held[-1])) + 1]
    return int(keep.min()), int(keep.max()) + 1


def _fast_len(n: int) -> int:
    import scipy.fft

    return int(scipy.fft.next_fast_len(n, real=True))


class LiveChroma:
    """Causal constant-Q chroma of a stream: ``feed`` every hop, ``measure`` when a frame is due.

    ``input_rate`` is the stream's rate, ``analysis_rate`` the offline analysis's
    (``AudioConfig.sample_rate``), which decides the bins and their weights so that both paths
    measure the same transform. ``feed`` only decimates and buffers (cheap); ``measure`` runs
    the FFTs and returns the :func:`pitch_classes` of the audio fed so far (not yet normalised
    per frame), computed at most once between feeds. ``tuning`` is the running tuning estimate
    in fractions of a bin, like ``librosa.estimate_tuning(bins_per_octave=36)``, updated every
    ``TUNING_EVERY`` measurements; ``latency_s`` the lag of each bin.
    """

    def __init__(self, input_rate: float, analysis_rate: float) -> None:
        if input_rate <= 0 or analysis_rate <= 0:
            raise AudioError(
                f"live chroma: sample rates must be positive, got {input_rate} and {analysis_rate}"
            )
        import scipy.fft

        self._rfft = scipy.fft.rfft
        self._plan = plan = _plan(float(input_rate), float(analysis_rate))
        self.n_bins = plan.n_bins
        self.latency_s: Float64Array = plan.latency_s
        self._input_rate = float(input_rate)
        self._bin_axis = np.arange(plan.n_bins, dtype=np.float64)
        self.reset()

    @property
    def tuning(self) -> float:
        """The tuning estimate so far, in fractions of a bin within [-0.5, 0.5)."""
        return self._tuning

    @property
    def magnitudes(self) -> Float64Array:
        """The constant-Q magnitudes of the last measurement, C1 upwards, 36 bins per octave."""
        view = self._magnitudes.view()
        view.setflags(write=False)
        return view

    @property
    def ffts(self) -> tuple[tuple[float, int], ...]:
        """Each stage's sample rate (Hz) and FFT size: one FFT of each per measurement."""
        return tuple((stage.rate, stage.n_fft) for stage in self._plan.stages)

    @property
    def window_s(self) -> float:
        """The longest live filter in seconds: how much past audio the chroma depends on."""
        return float(2.0 * self.latency_s.max())

    def reset(self) -> None:
        """Forget all audio."""
        stages = self._plan.stages
        self._histories = [np.zeros(s.taps.size - 1, dtype=np.float32) for s in stages]
        # input samples each stage passes over before the next one its decimation keeps
        self._skips = [0] * len(stages)
        self._buffers = [np.zeros(s.n_fft, dtype=np.float32) for s in stages]
        # input waiting for the next measurement (filtering it then costs one pass, not one a hop)
        self._pending = np.zeros(
            self._plan.stages[0].n_fft * self._plan.stages[0].factor, np.float32
        )
        self._pending_size = 0
        self._magnitudes = np.zeros(self.n_bins, dtype=np.float64)
        self._chroma = np.zeros(N_CHROMA, dtype=np.float64)
        self._chroma.setflags(write=False)
        self._fed = 0  # input samples since the last tuning update
        self._measures = 0
        self._tuning_z = 0j
        self._tuning_mass = 0.0
        self._tuning = 0.0
        self._fresh = True  # the chroma is up to date with the audio absorbed
        self._positions = self._bin_axis.copy()

    def feed(self, samples: npt.NDArray[np.float32]) -> None:
        """Add input samples (any count); they are filtered when the next measurement needs them."""
        self._fed += samples.size
        size = self._pending_size
        end = size + samples.size
        if end <= self._pending.size:  # the usual case: a hop while a frame is being filled
            self._pending[size:end] = samples
            self._pending_size = end
            return
        for start in range(0, samples.size, self._pending.size // 2):
            self._absorb()
            piece = samples[start : start + self._pending.size // 2]
            self._pending[: piece.size] = piece
            self._pending_size = piece.size

    def _absorb(self) -> None:
        """Run the pending input through the decimation stages into their windows."""
        if not self._pending_size:
            return
        samples = self._pending[: self._pending_size]
        self._pending_size = 0
        for i, stage in enumerate(self._plan.stages):
            samples = self._decimate(i, stage, samples)
            buffer = self._buffers[i]
            n = samples.size
            if n >= buffer.size:
                buffer[:] = samples[-buffer.size :]
            elif n:
                buffer[:-n] = buffer[n:]
                buffer[-n:] = samples
        self._fresh = False

    def measure(self) -> Float64Array:
        """The chroma of the window ending at the newest sample fed (a read-only array)."""
        self._absorb()
        if self._fresh:
            return self._chroma
        plan = self._plan
        spectra = [self._rfft(buffer) for buffer in self._buffers]
        spectrum = spectra[0] if len(spectra) == 1 else np.concatenate(spectra)
        response = np.abs(plan.kernel @ spectrum)
        self._magnitudes[plan.bins] = response
        self._measures += 1
        if self._measures % TUNING_EVERY == 0:
            self._update_tuning(self._magnitudes)
        # the magnitudes read at the tuned bin centres (linear between bins, 0 beyond the ends)
        tuned = np.interp(self._positions, self._bin_axis, self._magnitudes, left=0.0, right=0.0)
        chroma = pitch_classes(tuned)
        chroma.setflags(write=False)
        self._chroma = chroma
        self._fresh = True
        return chroma

    def push(self, samples: npt.NDArray[np.float32]) -> Float64Array:
        """``feed`` then ``measure``."""
        self.feed(samples)
        return self.measure()

    def _decimate(
        self, i: int, stage: _Stage, samples: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """Low-pass and keep every ``factor``-th sample, continuing across calls."""
        factor = stage.factor
        if factor == 1:
            return samples
        taps = stage.taps
        joined = np.concatenate([self._histories[i], samples])
        skip = self._skips[i]
        count = (joined.size - taps.size - skip) // factor + 1
        self._skips[i] = skip + count * factor - (joined.size - taps.size + 1)
        self._histories[i] = joined[joined.size - taps.size + 1 :]
        if count <= 0:
            return np.zeros(0, dtype=np.float32)
        # each row a window of the input ending at a kept sample, without copying
        item = joined.itemsize
        windows: npt.NDArray[np.float32] = np.ndarray(
            (count, taps.size), np.float32, joined, skip * item, (factor * item, item)
        )
        return windows @ taps

    def _update_tuning(self, magnitudes: Float64Array) -> None:
        """How far the spectral peaks sit from the bin centres, over the recent past.

        Each peak of a full-resolution bin is placed between its neighbours by a parabola
        through their log magnitudes; the offsets (a fraction of a bin, taken modulo one bin as
        ``librosa.estimate_tuning`` does) are averaged on the circle, weighted by the peaks'
        magnitudes, older hops decaying.
        """
        full_q = self._plan.full_q
        mid = magnitudes[1:-1]
        peaks = full_q[1:-1] & (mid > magnitudes[:-2]) & (mid >= magnitudes[2:])
        decay = 0.5 ** (self._fed / self._input_rate / TUNING_HALF_LIFE_S)
        self._fed = 0
        self._tuning_z *= decay
        self._tuning_mass *= decay
        where = np.flatnonzero(peaks) + 1
        if not where.size:
            return
        logs = np.log(magnitudes[where[:, None] + np.arange(-1, 2)] + 1e-12)
        left, centre, right = logs[:, 0], logs[:, 1], logs[:, 2]
        curvature = np.minimum(left - 2.0 * centre + right, -1e-12)
        offset = np.clip(0.5 * (left - right) / curvature, -0.5, 0.5)
        weight = magnitudes[where]
        self._tuning_z += complex(weight @ np.exp(2j * np.pi * offset))
        self._tuning_mass += float(weight.sum())
        if abs(self._tuning_z) < MIN_TUNING_CLARITY * self._tuning_mass:
            return
        bins = math.atan2(self._tuning_z.imag, self._tuning_z.real) / (2.0 * math.pi)
        self._tuning = (bins + 0.5) % 1.0 - 0.5
        self._positions = self._bin_axis + self._tuning

"""Spectral building blocks shared by the offline and the streaming analyzers.

Both analyzers measure loudness the same way (band RMS from a windowed power spectrum, in the
units of the signal, so one silence threshold serves both) and choose among tempo octaves with
the same prior, so that a song analysed offline and live agrees.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engine.audio.types import FloatArray

# below this RMS (-80 dBFS) a frame counts as silence: features are 0 there, not noise blown up
SILENCE_RMS = 1e-4

# the tempo prior is centred here (clipped into the configured range), an octave wide, like librosa's
TEMPO_PRIOR_CENTER_BPM = 120.0
TEMPO_PRIOR_OCTAVES = 1.0

BAND_NAMES: tuple[str, str, str] = ("low", "mid", "high")


def hann_window(n_fft: int) -> FloatArray:
    """The periodic Hann window (the one STFTs use), float32."""
    k = np.arange(n_fft, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * k / n_fft)).astype(np.float32)


def band_matrix(
    sample_rate: float, n_fft: int, edges: tuple[float, float], window: FloatArray
) -> FloatArray:
    """A ``(3, n_fft // 2 + 1)`` matrix that maps a power spectrum to low/mid/high mean squares.

    The rows select the bins below ``edges[0]``, between the edges and above ``edges[1]``, and
    carry the Parseval factor of the window, so ``sqrt(matrix @ |X|**2)`` is each band's RMS in
    the units of the signal (a full-scale sine reads 0.707) and the three add up to the total.
    """
    freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    low, high = edges
    masks = np.stack([freqs < low, (freqs >= low) & (freqs < high), freqs >= high])
    # one-sided spectrum: every bin stands for itself and its mirror image
    scale = 2.0 / (n_fft * float(np.sum(window.astype(np.float64) ** 2)))
    return (masks * scale).astype(np.float32)


def peak_normalise(values: npt.NDArray[np.floating], floor: float) -> FloatArray:
    """``values`` divided by their maximum, never by less than ``floor`` (silence stays 0)."""
    peak = float(np.max(values)) if values.size else 0.0
    return (np.asarray(values, dtype=np.float64) / max(peak, floor)).astype(np.float32)


def tempo_log_prior(
    bpm: npt.NDArray[np.floating], tempo_min: float, tempo_max: float
) -> npt.NDArray[np.float64]:
    """Log weight of each candidate tempo: a log-normal bump, ``-inf`` outside the range.

    Click tracks correlate as well at twice the period as at the period; the bump breaks such
    ties towards moderate tempi, the bounds keep the choice inside ``[tempo_min, tempo_max]``.
    """
    bpm = np.asarray(bpm, dtype=np.float64)
    center = float(np.clip(TEMPO_PRIOR_CENTER_BPM, tempo_min, tempo_max))
    inside = (bpm >= tempo_min) & (bpm <= tempo_max)
    with np.errstate(divide="ignore", invalid="ignore"):
        bump = -0.5 * (np.log2(bpm / center) / TEMPO_PRIOR_OCTAVES) ** 2
    return np.where(inside, bump, -np.inf)


def refine_peak(values: npt.NDArray[np.floating], index: int) -> float:
    """Sub-sample position of the peak at ``index`` by a parabola through its neighbours."""
    if index <= 0 or index >= len(values) - 1:
        return float(index)
    left, mid, right = (float(v) for v in values[index - 1 : index + 2])
    curvature = left - 2.0 * mid + right
    if curvature >= 0:
        return float(index)
    return float(index + np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))

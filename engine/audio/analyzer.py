"""Offline analysis of a whole song: decode, measure, align to video frames, cache on disk.

``AudioAnalyzer(config.audio).analyze(path)`` returns frozen ``AudioFeatures`` sampled at
``config.fps`` video frames per second (frame ``i`` covers ``[i / fps, (i + 1) / fps)``).
Features are measured at the analysis hop (``config.hop_length`` samples at
``config.sample_rate``) and then reduced per video frame: the mean for energy, bands and
chroma, the maximum for onset strength, so that no onset falls between two frames.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from engine.audio.chroma import (
    BINS_PER_OCTAVE,
    CQT_FMIN_HZ,
    normalise_frames,
    octaves_for,
    pitch_classes,
)
from engine.audio.spectrum import (
    SILENCE_RMS,
    band_matrix,
    hann_window,
    peak_normalise,
    tempo_log_prior,
)
from engine.audio.types import AudioFeatures, FloatArray
from engine.config import AudioConfig
from engine.errors import AudioError

if TYPE_CHECKING:
    from scipy.stats import rv_continuous

log = logging.getLogger(__name__)

# bump when the features change meaning, so old cache entries stop matching
# (2: the tracked beat times kept; 3: chroma from the peaks of the constant-Q magnitudes,
# log-compressed, shared with live)
CACHE_VERSION = 3

# the config fields the features depend on (device, block size, cache settings do not matter)
CACHE_FIELDS: tuple[str, ...] = (
    "sample_rate",
    "fps",
    "hop_length",
    "n_fft",
    "tempo_min",
    "tempo_max",
    "band_edges",
)

_ARRAYS: tuple[str, ...] = (
    "beat_frames",
    "beat_times",
    "onset",
    "energy",
    "chroma_cq",
    "low",
    "mid",
    "high",
)
_SCALARS: tuple[str, ...] = ("duration", "fps", "sample_rate", "tempo")

# libsndfile error codes after which another decoder may still succeed (unknown container or codec)
_SF_UNRECOGNISED_FORMAT = 1
_SF_UNSUPPORTED_ENCODING = 4

# a file that decodes to less than this share of its declared length is truncated
_TRUNCATED_SHARE = 0.9


def default_cache_dir() -> Path:
    """The user cache folder for analysis results (``$XDG_CACHE_HOME/hambametal/features``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hambametal" / "features"


def load_audio(path: str | Path, sample_rate: int | None = None) -> tuple[FloatArray, int]:
    """Decode an audio file to mono float32 samples, resampled to ``sample_rate`` when given.

    Anything libsndfile reads (wav, flac, ogg, mp3, aiff, ...) is read by soundfile; other
    containers and codecs (m4a/aac, opus in webm, ...) by ffmpeg through PyAV. Missing, empty,
    unreadable and truncated files raise ``AudioError`` naming the file.
    """
    file = check_audio_path(path)
    samples, native_rate = _decode_soundfile(file)
    if samples is None:
        samples, native_rate = _decode_pyav(file)
    if samples.size == 0:
        raise AudioError(f"{file}: contains no audio samples")
    mono = samples.mean(axis=0) if samples.shape[0] > 1 else samples[0]
    mono = np.nan_to_num(mono.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    if sample_rate is None or sample_rate == native_rate:
        return np.ascontiguousarray(mono, dtype=np.float32), native_rate
    import librosa

    resampled = librosa.resample(mono, orig_sr=native_rate, target_sr=sample_rate)
    return np.ascontiguousarray(resampled, dtype=np.float32), sample_rate


def check_audio_path(path: str | Path) -> Path:
    """The path as a ``Path`` if it names a non-empty file, else an ``AudioError`` naming it."""
    file = Path(path)
    if not file.exists():
        raise AudioError(f"audio file not found: {file}")
    if not file.is_file():
        raise AudioError(f"audio path is not a file: {file}")
    if file.stat().st_size == 0:
        raise AudioError(f"{file}: empty file")
    return file


def _decode_soundfile(file: Path) -> tuple[npt.NDArray[np.float32] | None, int]:
    """``(channels, n)`` samples via libsndfile, or ``(None, 0)`` when it cannot parse the format."""
    import soundfile as sf

    try:
        handle = sf.SoundFile(str(file))
    except sf.LibsndfileError as exc:
        if exc.code in (_SF_UNRECOGNISED_FORMAT, _SF_UNSUPPORTED_ENCODING):
            return None, 0
        raise AudioError(f"{file}: malformed audio file ({exc.error_string})") from None
    except (RuntimeError, OSError) as exc:
        raise AudioError(f"{file}: cannot open ({exc})") from None
    with handle:
        if handle.format in ("WAV", "WAVEX"):
            _check_riff_complete(file)
        try:
            data = handle.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{file}: truncated or corrupt audio data ({exc})") from None
        if handle.frames > 0:
            rate = handle.samplerate
            _check_complete(file, data.shape[0] / rate, handle.frames / rate)
        return np.ascontiguousarray(data.T), int(handle.samplerate)


def _check_riff_complete(file: Path) -> None:
    """Raise if a RIFF/WAVE data chunk declares more bytes than the file holds.

    libsndfile quietly shortens such files to what is there; a cut-off download would then
    analyse as a shorter song, so it is reported instead.
    """
    size = file.stat().st_size
    with file.open("rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] not in (b"RIFF", b"RIFX") or header[8:12] != b"WAVE":
            return
        order: Literal["little", "big"] = "little" if header[:4] == b"RIFF" else "big"
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return
            chunk_id, length = chunk[:4], int.from_bytes(chunk[4:], order)
            if chunk_id == b"data":
                # 0 and 0xFFFFFFFF mark streams written without knowing their length
                available = size - handle.tell()
                if length not in (0, 0xFFFFFFFF) and length > available:
                    raise AudioError(
                        f"{file}: truncated: the data chunk declares {length} bytes, "
                        f"only {available} are present"
                    )
                return
            handle.seek(length + (length & 1), os.SEEK_CUR)


def _decode_pyav(file: Path) -> tuple[npt.NDArray[np.float32], int]:
    """``(channels, n)`` samples of the first audio stream via ffmpeg (PyAV)."""
    import av

    try:
        container = av.open(str(file))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(f"{file}: not a readable audio file ({exc})") from None
    with container:
        if not container.streams.audio:
            raise AudioError(f"{file}: has no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        if rate <= 0:
            raise AudioError(f"{file}: audio stream has no sample rate")
        # planar float at the native rate and layout: downmix and resampling happen in one place
        resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=rate)
        chunks: list[npt.NDArray[Any]] = []
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except (av.error.FFmpegError, ValueError) as exc:
            raise AudioError(f"{file}: truncated or corrupt audio data ({exc})") from None
        declared = _declared_seconds(stream)
    if not chunks:
        raise AudioError(f"{file}: contains no decodable audio")
    samples = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    if declared is not None:
        _check_complete(file, samples.shape[1] / rate, declared)
    return samples, rate


def _check_complete(file: Path, decoded: float, declared: float) -> None:
    """Raise if clearly less audio decoded than the header declares.

    Compressed formats often estimate their length from the bitrate, so only a shortfall of
    more than 10 % (and 0.1 s) counts as truncation.
    """
    if decoded < _TRUNCATED_SHARE * declared - 0.1:
        raise AudioError(
            f"{file}: truncated: decoded {decoded:.2f} s of a declared {declared:.2f} s"
        )


def _declared_seconds(stream: Any) -> float | None:
    """The stream's length as its header states it, when it states one."""
    if stream.duration is None or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def _tempo_prior(tempo_min: float, tempo_max: float) -> rv_continuous:
    """The shared tempo prior as the scipy distribution librosa's tempo estimators accept."""
    import scipy.stats

    # the stubs allow a scalar x and shape arguments; librosa's estimators pass an array of
    # tempi and the prior has no shapes
    class _TempoPrior(scipy.stats.rv_continuous):
        def _logpdf(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:  # type: ignore[override]
            return tempo_log_prior(x, tempo_min, tempo_max)

        def _pdf(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:  # type: ignore[override]
            return np.exp(self._logpdf(x))

    return _TempoPrior(a=tempo_min, b=tempo_max, name="tempo_prior")


def _to_video_frames(
    values: npt.NDArray[np.floating],
    times: npt.NDArray[np.floating],
    fps: float,
    num_frames: int,
    how: Literal["mean", "max"],
) -> npt.NDArray[np.float64]:
    """Reduce ``(..., n)`` values sampled at ``times`` to ``(..., num_frames)`` video frames.

    A frame with no analysis sample inside (video faster than the hop) takes the value
    interpolated at its start time.
    """
    rows = np.atleast_2d(np.asarray(values, dtype=np.float64))
    bins = np.clip(np.floor(times * fps + 1e-9).astype(np.int64), 0, num_frames - 1)
    counts = np.bincount(bins, minlength=num_frames)
    out = np.zeros((rows.shape[0], num_frames), dtype=np.float64)
    if how == "mean":
        for r, row in enumerate(rows):
            out[r] = np.bincount(bins, weights=row, minlength=num_frames)
        out[:, counts > 0] /= counts[counts > 0]
    else:
        out[:] = -np.inf
        for r, row in enumerate(rows):
            np.maximum.at(out[r], bins, row)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        starts = empty / fps
        for r, row in enumerate(rows):
            out[r, empty] = np.interp(starts, times, row)
    return out.reshape((*np.shape(values)[:-1], num_frames))


class AudioAnalyzer:
    """Analyses songs into ``AudioFeatures`` at ``config.fps``, with a disk cache.

    ``computed`` and ``cache_hits`` count the analyses this instance ran and the ones it loaded
    from the cache.
    """

    def __init__(self, config: AudioConfig | None = None) -> None:
        self.config = config if config is not None else AudioConfig()
        self.computed = 0
        self.cache_hits = 0

    @property
    def cache_dir(self) -> Path:
        """Where cached analyses live (``config.cache_dir`` or the user cache folder)."""
        return self.config.cache_dir if self.config.cache_dir is not None else default_cache_dir()

    def analyze(self, path: str | Path) -> AudioFeatures:
        """Features of the song at ``path``, from the cache when this content was seen before."""
        file = check_audio_path(path)
        entry: Path | None = None
        if self.config.cache:
            entry = self.cache_dir / f"{self.cache_key(file)}.npz"
            cached = self._load_cached(entry, file)
            if cached is not None:
                self.cache_hits += 1
                return cached
        samples, sample_rate = load_audio(file, self.config.sample_rate)
        features = self.analyze_samples(samples, sample_rate, path=str(file))
        self.computed += 1
        if entry is not None:
            self._store(entry, features)
        return features

    def cache_key(self, path: str | Path) -> str:
        """Hex digest of the file's bytes and the config fields the features depend on."""
        digest = hashlib.sha256()
        with Path(path).open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        settings = {name: getattr(self.config, name) for name in CACHE_FIELDS}
        settings["version"] = CACHE_VERSION
        digest.update(json.dumps(settings, sort_keys=True, default=list).encode())
        return digest.hexdigest()

    def analyze_samples(
        self, samples: FloatArray, sample_rate: int, path: str = "<samples>"
    ) -> AudioFeatures:
        """Features of mono samples already at ``sample_rate`` (no decoding, no cache)."""
        import librosa

        cfg = self.config
        y = np.ascontiguousarray(samples, dtype=np.float32)
        if y.ndim != 1 or y.size == 0:
            raise AudioError(f"{path}: expected non-empty mono samples, got shape {y.shape}")
        hop, n_fft = cfg.hop_length, cfg.n_fft
        duration = y.size / sample_rate
        num_frames = max(1, math.ceil(duration * cfg.fps - 1e-9))

        # loudness per analysis frame, total and per band, from one STFT
        window = hann_window(n_fft)
        stft = librosa.stft(y, n_fft=n_fft, hop_length=hop, window=window, center=True)
        power = (stft.real**2 + stft.imag**2).astype(np.float32)
        bands = band_matrix(sample_rate, n_fft, cfg.band_edges, window) @ power
        times = librosa.frames_to_time(np.arange(power.shape[1]), sr=sample_rate, hop_length=hop)
        band_rms = np.sqrt(_to_video_frames(bands, times, cfg.fps, num_frames, "mean"))
        rms = np.sqrt(np.sum(band_rms**2, axis=0))
        silent = float(rms.max()) < SILENCE_RMS

        onset_env = librosa.onset.onset_strength(
            y=y, sr=sample_rate, hop_length=hop, n_fft=n_fft, center=True
        )
        if silent:
            tempo, beat_times = 0.0, np.zeros(0)
            onset = np.zeros(num_frames)
            chroma = np.zeros((12, num_frames))
        else:
            tempo, beat_times = self._beats(onset_env, sample_rate)
            onset_times = librosa.frames_to_time(
                np.arange(onset_env.size), sr=sample_rate, hop_length=hop
            )
            onset = _to_video_frames(onset_env, onset_times, cfg.fps, num_frames, "max")
            chroma = self._chroma(y, sample_rate, num_frames, rms)

        beat_frames = np.unique(
            np.clip(np.floor(beat_times * cfg.fps + 1e-9), 0, num_frames - 1).astype(np.int64)
        )
        return AudioFeatures(
            path=path,
            duration=duration,
            fps=cfg.fps,
            sample_rate=sample_rate,
            tempo=tempo,
            beat_frames=beat_frames,
            beat_times=beat_times,
            onset=peak_normalise(onset, floor=1e-12),
            energy=peak_normalise(rms, floor=SILENCE_RMS),
            chroma_cq=chroma.astype(np.float32),
            low=peak_normalise(band_rms[0], floor=SILENCE_RMS),
            mid=peak_normalise(band_rms[1], floor=SILENCE_RMS),
            high=peak_normalise(band_rms[2], floor=SILENCE_RMS),
        )

    def _beats(
        self, onset_env: npt.NDArray[np.floating], sample_rate: int
    ) -> tuple[float, npt.NDArray[np.float64]]:
        """Tempo (BPM) and beat times (s) from the onset envelope."""
        import librosa

        cfg = self.config
        prior = _tempo_prior(cfg.tempo_min, cfg.tempo_max)
        estimate = float(
            librosa.feature.tempo(
                onset_envelope=onset_env, sr=sample_rate, hop_length=cfg.hop_length, prior=prior
            )[0]
        )
        # the tempogram's lag grid is coarse (2.5 % at 140 BPM) and a beat tracker told a wrong
        # tempo drifts off the onsets: track once, refine the tempo from the grid, track again
        beat_times = self._track(onset_env, sample_rate, estimate)
        refined = _refine_tempo(estimate, beat_times)
        if refined != estimate:
            beat_times = self._track(onset_env, sample_rate, refined)
        return refined, beat_times

    def _track(
        self, onset_env: npt.NDArray[np.floating], sample_rate: int, bpm: float
    ) -> npt.NDArray[np.float64]:
        """Beat times (s) by dynamic programming at a given tempo."""
        import librosa

        _, beats = librosa.beat.beat_track(
            onset_envelope=onset_env,
            sr=sample_rate,
            hop_length=self.config.hop_length,
            bpm=bpm,
            units="time",
        )
        return _drop_stray_edges(np.asarray(beats, dtype=np.float64))

    def _chroma(
        self,
        y: FloatArray,
        sample_rate: int,
        num_frames: int,
        rms: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """Constant-Q chroma per video frame, each column's maximum 1, silent frames 0.

        The magnitudes of librosa's constant-Q transform (bins at concert pitch, A = 440 Hz)
        reduced by the same functions the live analysis uses (``engine.audio.chroma``), so both
        give the same weights. The song's tuning is not estimated here: the fold's three bins a
        semitone absorb a detuned song (see ``engine.audio.chroma``), and the estimate would cost
        about 1.2 s on a three-minute song.
        """
        import librosa

        # the multirate CQT halves the signal once per octave: its hop must divide by 2**(octaves-1)
        n_octaves = octaves_for(sample_rate)
        step = 2 ** (n_octaves - 1)
        hop = max(step, self.config.hop_length // step * step)
        with warnings.catch_warnings():
            # a short clip leaves the lowest, most decimated octave shorter than its fft: harmless
            warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
            magnitudes = np.abs(
                librosa.cqt(
                    y,
                    sr=sample_rate,
                    hop_length=hop,
                    fmin=CQT_FMIN_HZ,
                    n_bins=n_octaves * BINS_PER_OCTAVE,
                    bins_per_octave=BINS_PER_OCTAVE,
                )
            )
        chroma = pitch_classes(np.nan_to_num(magnitudes, nan=0.0))
        times = librosa.frames_to_time(np.arange(chroma.shape[1]), sr=sample_rate, hop_length=hop)
        frames = _to_video_frames(chroma, times, self.config.fps, num_frames, "mean")
        return normalise_frames(frames, rms)

    def _load_cached(self, entry: Path, file: Path) -> AudioFeatures | None:
        """The cached features at ``entry``, or None when absent or unreadable (then recomputed)."""
        if not entry.is_file():
            return None
        try:
            with np.load(entry, allow_pickle=False) as data:
                if int(data["version"]) != CACHE_VERSION:
                    return None
                arrays = {name: np.array(data[name]) for name in _ARRAYS}
                scalars = {name: data[name].item() for name in _SCALARS}
            return AudioFeatures(
                path=str(file),
                duration=float(scalars["duration"]),
                fps=float(scalars["fps"]),
                sample_rate=int(scalars["sample_rate"]),
                tempo=float(scalars["tempo"]),
                **arrays,
            )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("ignoring unreadable analysis cache entry %s (%s)", entry, exc)
            return None

    def _store(self, entry: Path, features: AudioFeatures) -> None:
        """Write the features atomically; a cache that cannot be written only costs a warning."""
        payload: dict[str, Any] = {name: getattr(features, name) for name in _ARRAYS}
        payload.update({name: np.asarray(getattr(features, name)) for name in _SCALARS})
        payload["version"] = np.asarray(CACHE_VERSION)
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".npz")
            try:
                with os.fdopen(fd, "wb") as handle:
                    np.savez(handle, **payload)
                os.replace(tmp, entry)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.warning("cannot write analysis cache entry %s (%s)", entry, exc)


def _steady_interval(beat_times: npt.NDArray[np.float64]) -> float:
    """Mean beat interval over the intervals within 25 % of the median (skips and doubles out)."""
    intervals = np.diff(beat_times)
    median = float(np.median(intervals))
    steady = intervals[np.abs(intervals - median) <= 0.25 * median]
    return float(steady.mean()) if steady.size else median


def _drop_stray_edges(beat_times: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Drop a first or last beat that sits off the grid the other beats keep.

    The dynamic programme places the final beat where the cumulative score peaks, which near
    the end of a file can be between onsets; a beat more than 15 % off the steady interval from
    its neighbour is such an artefact.
    """
    if beat_times.size < 4:
        return beat_times
    period = _steady_interval(beat_times)
    keep = np.ones(beat_times.size, dtype=bool)
    for edge, neighbour in ((0, 1), (-1, -2)):
        if abs(abs(beat_times[edge] - beat_times[neighbour]) - period) > 0.15 * period:
            keep[edge] = False
    return beat_times[keep]


def _refine_tempo(estimate: float, beat_times: npt.NDArray[np.float64]) -> float:
    """The tempo the beat grid implies, finer than the tempogram's lag resolution.

    The span from the first to the last beat divided by the whole number of beat periods it
    holds (a missed or an extra beat does not bias it); kept only if it stays within 10 % of
    the estimate.
    """
    if beat_times.size < 4 or estimate <= 0:
        return estimate
    span = float(beat_times[-1] - beat_times[0])
    periods = round(span / _steady_interval(beat_times))
    if periods < 3:
        return estimate
    refined = 60.0 * periods / span
    return refined if abs(refined - estimate) <= 0.1 * estimate else estimate

"""Audio analysis benchmark: offline analysis of a 3-minute song, and streaming cost per block.

Run ``python -m benchmarks.bench_audio`` (or ``hamba bench``). The song is the demo groove of
``scripts/make_demo_audio.py`` stretched to the asked length, written as a 44.1 kHz stereo WAV
(what a typical song file is), so the offline figure includes decoding and resampling.

Measures:
- librosa's one-off numba compilation (first beat tracking in a process);
- a cold analysis (no cache): decode + resample, then the features, and both together;
- the cached second analysis of the same file (a fresh analyzer, as a new process would be);
- ``StreamingAnalyzer.push`` per 512-sample block at 22.05, 44.1 and 48 kHz: mean, median,
  p99 and worst (a tempo update every quarter second is the costly block).

Prints a table and writes JSON with the conditions (cpu, python, library versions, date).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from engine.audio.analyzer import AudioAnalyzer, load_audio
from engine.audio.streaming import StreamingAnalyzer
from engine.config import AudioConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "audio.json"
FILE_RATE = 44100
STREAM_RATES = (22050, 44100, 48000)


def _demo_script() -> ModuleType:
    """The demo-song generator, loaded from the scripts folder (it is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "make_demo_audio", ROOT / "scripts" / "make_demo_audio.py"
    )
    if spec is None or spec.loader is None:
        raise RuntimeError("cannot load scripts/make_demo_audio.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def conditions() -> dict[str, Any]:
    """What the figures depend on: machine, interpreter, library versions, date."""
    import librosa
    import scipy
    import soundfile

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "librosa": librosa.__version__,
        "soundfile": soundfile.__version__,
    }


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def bench_offline(song: Path, config: AudioConfig) -> dict[str, Any]:
    """Seconds for a cold analysis (split into decode and features) and for a cached one."""
    _, decode_s = _timed(load_audio, song, config.sample_rate)
    cold = AudioAnalyzer(config)
    features, cold_s = _timed(cold.analyze, song)
    samples, _ = load_audio(song, config.sample_rate)
    _, features_s = _timed(
        AudioAnalyzer(config.model_copy(update={"cache": False})).analyze_samples,
        samples,
        config.sample_rate,
    )
    cached = AudioAnalyzer(config)
    _, cached_s = _timed(cached.analyze, song)
    if (cold.computed, cached.cache_hits) != (1, 1):
        raise RuntimeError("the cached run did not load from the cache")
    return {
        "duration_s": features.duration,
        "tempo_bpm": round(features.tempo, 2),
        "beats": int(features.beat_frames.size),
        "decode_resample_s": decode_s,
        "features_s": features_s,
        "cold_total_s": cold_s,
        "cached_s": cached_s,
        "realtime_factor_cold": features.duration / cold_s,
    }


def bench_streaming(
    song: Any, song_rate: int, rate: int, block: int, seconds: float
) -> dict[str, Any]:
    """Per-block cost of ``StreamingAnalyzer.push`` on ``seconds`` of the song at ``rate``."""
    import librosa

    audio = librosa.resample(song[: int(seconds * song_rate)], orig_sr=song_rate, target_sr=rate)
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    analyzer = StreamingAnalyzer(AudioConfig(), rate)
    costs = []
    frames = 0
    for start in range(0, audio.size - block + 1, block):
        piece = audio[start : start + block]
        t0 = time.perf_counter_ns()
        frames += len(analyzer.push(piece))
        costs.append(time.perf_counter_ns() - t0)
    us = np.array(costs, dtype=np.float64) / 1000.0
    return {
        "sample_rate": rate,
        "block": block,
        "blocks": int(us.size),
        "block_budget_us": 1e6 * block / rate,
        "mean_us": float(us.mean()),
        "median_us": float(np.median(us)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
        "frames": frames,
        "tempo_bpm": round(analyzer.tempo, 2),
    }


def run(
    duration: float = 180.0,
    stream_seconds: float = 60.0,
    block: int = 512,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run every measurement and return the results with their conditions."""
    import soundfile as sf

    results: dict[str, Any] = {"benchmark": "audio", "conditions": conditions()}
    song = _demo_script().make_demo(sample_rate=FILE_RATE, duration=duration).astype(np.float32)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / "song.wav"
        sf.write(str(path), np.stack([song, song], axis=1), FILE_RATE, subtype="PCM_16")
        config = AudioConfig(cache=True, cache_dir=Path(tmp) / "cache")
        warm_samples = song[: 4 * FILE_RATE]
        _, jit_s = _timed(
            AudioAnalyzer(config.model_copy(update={"cache": False})).analyze_samples,
            warm_samples,
            FILE_RATE,
        )
        results["librosa_first_call_s"] = jit_s
        results["offline"] = {
            "file": f"{duration:g} s, {FILE_RATE} Hz stereo 16-bit WAV",
            **bench_offline(path, config),
        }
    results["streaming"] = [
        bench_streaming(song, FILE_RATE, rate, block, stream_seconds) for rate in STREAM_RATES
    ]
    return results


def format_table(results: dict[str, Any]) -> str:
    """The results as a plain-text table."""
    off = results["offline"]
    lines = [
        f"audio benchmark, {results['conditions']['cpu']} ({results['conditions']['cpu_count']} cpus), "
        f"python {results['conditions']['python']}, librosa {results['conditions']['librosa']}",
        f"librosa first call (numba compile)   {results['librosa_first_call_s']:8.2f} s",
        f"offline, {off['file']}:",
        f"  decode + resample                  {off['decode_resample_s']:8.2f} s",
        f"  features (stft, onset, beats, cqt) {off['features_s']:8.2f} s",
        f"  cold analyze, total                {off['cold_total_s']:8.2f} s   ({off['realtime_factor_cold']:.0f}x real time)",
        f"  cached analyze                     {off['cached_s'] * 1000:8.1f} ms",
        f"  tempo {off['tempo_bpm']} BPM, {off['beats']} beats",
        "streaming, per block:",
        "  rate Hz  block  budget us   mean us  median us    p99 us    max us  tempo",
    ]
    for s in results["streaming"]:
        lines.append(
            f"  {s['sample_rate']:7d}  {s['block']:5d}  {s['block_budget_us']:9.0f}  {s['mean_us']:8.1f}"
            f"  {s['median_us']:9.1f}  {s['p99_us']:8.1f}  {s['max_us']:8.1f}  {s['tempo_bpm']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description="audio analysis benchmark")
    parser.add_argument(
        "--duration", type=float, default=180.0, help="song length for the offline run (s)"
    )
    parser.add_argument(
        "--stream-seconds", type=float, default=60.0, help="audio streamed per rate (s)"
    )
    parser.add_argument("--block", type=int, default=512, help="streaming block size (samples)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    args = parser.parse_args(argv)
    results = run(duration=args.duration, stream_seconds=args.stream_seconds, block=args.block)
    print(format_table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

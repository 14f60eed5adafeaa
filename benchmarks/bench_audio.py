"""Audio analysis benchmark: offline analysis of a 3-minute song, and streaming cost per block.

Run ``python -m benchmarks.bench_audio`` (or ``hamba bench``). The song is the demo groove of
``scripts/make_demo_audio.py`` stretched to the asked length, written as a 44.1 kHz stereo WAV
(what a typical song file is), so the offline figure includes decoding and resampling.

Measures:
- librosa's one-off numba compilation (first beat tracking in a process);
- a cold analysis (no cache): decode + resample, then the features, and both together;
- the cached second analysis of the same file (a fresh analyzer, as a new process would be);
- ``StreamingAnalyzer.push`` per 512-sample block at 22.05, 44.1 and 48 kHz: mean, median,
  p99 and worst (a tempo update every quarter second is the costly block);
- the live chroma's window and the latency it adds (``LiveChroma.latency_s``);
- with ``--baseline REF`` (a git commit or branch), the same per-block cost of REF's streaming
  analyzer and of this tree's, taken alternately in fresh processes on the same audio
  (``--repeats`` times each), so that a change is compared under the same load.

Prints a table and writes JSON with the conditions (cpu, python, library versions, date).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
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
        "librosa": librosa.version.version,  # its stubs leave __version__ out
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


def _stream_audio(song: Any, song_rate: int, rate: int, seconds: float) -> np.ndarray:
    """``seconds`` of the song resampled to ``rate``, float32."""
    import librosa

    audio = librosa.resample(song[: int(seconds * song_rate)], orig_sr=song_rate, target_sr=rate)
    return np.ascontiguousarray(audio, dtype=np.float32)


def time_blocks(audio: np.ndarray, rate: int, block: int) -> dict[str, Any]:
    """Per-block cost of a fresh ``StreamingAnalyzer.push`` over ``audio`` at ``rate``."""
    analyzer = StreamingAnalyzer(AudioConfig(), rate)
    costs = []
    cpu = []
    frames = 0
    for start in range(0, audio.size - block + 1, block):
        piece = audio[start : start + block]
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        frames += len(analyzer.push(piece))
        t1 = time.perf_counter_ns()
        cpu.append(time.thread_time_ns() - c0)
        costs.append(t1 - t0)
    us = np.array(costs, dtype=np.float64) / 1000.0
    cpu_us = np.array(cpu, dtype=np.float64) / 1000.0
    return {
        "sample_rate": rate,
        "block": block,
        "blocks": int(us.size),
        "block_budget_us": 1e6 * block / rate,
        "mean_us": float(us.mean()),
        "median_us": float(np.median(us)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
        # the thread's CPU time: what the block costs without the waits other load imposes
        "cpu_mean_us": float(cpu_us.mean()),
        "frames": frames,
        "tempo_bpm": round(analyzer.tempo, 2),
    }


def bench_streaming(
    song: Any, song_rate: int, rate: int, block: int, seconds: float
) -> dict[str, Any]:
    """Per-block cost of ``StreamingAnalyzer.push`` on ``seconds`` of the song at ``rate``."""
    return time_blocks(_stream_audio(song, song_rate, rate, seconds), rate, block)


def live_chroma() -> dict[str, Any]:
    """The live chroma's window, the latency it adds and its stages, at 22.05 kHz input."""
    from engine.audio.chroma import LiveChroma

    chroma = LiveChroma(22050, AudioConfig().sample_rate)
    latency = chroma.latency_s
    # bins from C1, three per semitone
    return {
        "window_s": chroma.window_s,
        "latency_ms": {
            "G2_and_up_at_most": 1000 * float(latency[3 * 19 :].max()),
            "E2": 1000 * float(latency[3 * 16]),
            "A1": 1000 * float(latency[3 * 9]),
            "C1": 1000 * float(latency[0]),
        },
        "ffts": [{"rate_hz": rate, "n_fft": n_fft} for rate, n_fft in chroma.ffts],
    }


def _export_tree(ref: str, into: Path) -> str:
    """Unpack git ``ref`` of this repository into ``into``; its full commit id."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = into / "tree.tar"
    with archive.open("wb") as handle:
        subprocess.run(["git", "-C", str(ROOT), "archive", commit], stdout=handle, check=True)
    with tarfile.open(archive) as tar:
        # our own repository's archive; the "data" filter exists from Python 3.10.12 and 3.11.4
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into / "tree", filter="data")
        else:
            tar.extractall(into / "tree")
    return commit


def _worker(tree: Path, audio: Path, rate: int, block: int) -> dict[str, Any]:
    """``time_blocks`` in a fresh process whose ``engine`` is the one in ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(audio), str(rate)]
    out = subprocess.run(
        [*command, str(block)], capture_output=True, text=True, check=True, env=env
    ).stdout
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


def bench_baseline(
    ref: str, song: Any, song_rate: int, block: int, seconds: float, repeats: int, workdir: Path
) -> dict[str, Any]:
    """REF's and this tree's per-block cost, alternately, each in fresh processes."""
    commit = _export_tree(ref, workdir)
    rows = []
    for rate in STREAM_RATES:
        audio = workdir / f"audio-{rate}.npy"
        np.save(audio, _stream_audio(song, song_rate, rate, seconds))
        runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "current": []}
        for _ in range(repeats):
            runs["baseline"].append(_worker(workdir / "tree", audio, rate, block))
            runs["current"].append(_worker(ROOT, audio, rate, block))
        row: dict[str, Any] = {"sample_rate": rate, "block": block}
        for key in ("mean_us", "cpu_mean_us"):
            for side in ("baseline", "current"):
                row[f"{side}_{key}"] = statistics.median(run[key] for run in runs[side])
                row[f"{side}_{key}_runs"] = [run[key] for run in runs[side]]
            row[f"ratio_{key}"] = row[f"current_{key}"] / row[f"baseline_{key}"]
        rows.append(row)
    return {
        "ref": ref,
        "commit": commit,
        "repeats": repeats,
        "note": "per run the mean per-block wall time and thread CPU time; figures are the "
        "medians over the runs",
        "streaming": rows,
    }


def run(
    duration: float = 180.0,
    stream_seconds: float = 60.0,
    block: int = 512,
    workdir: Path | None = None,
    baseline: str | None = None,
    repeats: int = 3,
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
    results["live_chroma"] = live_chroma()
    if baseline is not None:
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            results["baseline"] = bench_baseline(
                baseline, song, FILE_RATE, block, stream_seconds, repeats, Path(tmp)
            )
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
    chroma = results["live_chroma"]
    lags = ", ".join(f"{k} {v:.0f} ms" for k, v in chroma["latency_ms"].items())
    lines.append(f"live chroma: window {chroma['window_s'] * 1000:.0f} ms; latency {lags}")
    if "baseline" in results:
        base = results["baseline"]
        lines.append(
            f"against {base['ref']} ({base['commit'][:10]}), mean per block (wall; thread CPU), "
            f"median of {base['repeats']} alternating runs:"
        )
        for row in base["streaming"]:
            lines.append(
                f"  {row['sample_rate']:7d} Hz  wall {row['baseline_mean_us']:7.1f} -> "
                f"{row['current_mean_us']:7.1f} us ({row['ratio_mean_us']:.2f}x); cpu "
                f"{row['baseline_cpu_mean_us']:7.1f} -> {row['current_cpu_mean_us']:7.1f} us "
                f"({row['ratio_cpu_mean_us']:.2f}x)"
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
    parser.add_argument(
        "--baseline", metavar="REF", help="also time REF's streaming analyzer (a git commit)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per side")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        audio, rate, block = args.worker
        print(json.dumps(time_blocks(np.load(audio), int(rate), int(block))))
        return 0
    results = run(
        duration=args.duration,
        stream_seconds=args.stream_seconds,
        block=args.block,
        baseline=args.baseline,
        repeats=args.repeats,
    )
    print(format_table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

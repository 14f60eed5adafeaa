"""The audio benchmark runs end to end on a short song; its figures are not judged here."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from benchmarks import bench_audio


def test_bench_audio_runs_and_writes_its_conditions(tmp_path: Path) -> None:
    out = tmp_path / "audio.json"

    assert bench_audio.main(["--duration", "6", "--stream-seconds", "2", "--out", str(out)]) == 0

    results = json.loads(out.read_text())
    assert {"date", "cpu", "python", "numpy", "librosa"} <= set(results["conditions"])
    offline = results["offline"]
    assert offline["duration_s"] == 6.0
    assert abs(offline["tempo_bpm"] - 120) < 3.6
    assert offline["cold_total_s"] > 0
    assert offline["cached_s"] > 0
    rates = [row["sample_rate"] for row in results["streaming"]]
    assert rates == [22050, 44100, 48000]
    for row in results["streaming"]:
        assert row["blocks"] == int(2 * row["sample_rate"]) // 512
        assert row["mean_us"] > 0
        assert row["p99_us"] >= row["median_us"]
    chroma = results["live_chroma"]
    assert 0.1 < chroma["window_s"] < 1.0
    assert chroma["latency_ms"]["C1"] == max(chroma["latency_ms"].values())


def test_bench_audio_times_a_baseline_commit_alongside(tmp_path: Path) -> None:
    out = tmp_path / "audio.json"
    if subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, check=False).returncode:
        pytest.skip("not a git checkout: nothing to take a baseline from")

    args = ["--duration", "6", "--stream-seconds", "1", "--baseline", "HEAD", "--repeats", "1"]
    assert bench_audio.main([*args, "--out", str(out)]) == 0

    baseline = json.loads(out.read_text())["baseline"]
    assert baseline["ref"] == "HEAD"
    assert len(baseline["commit"]) == 40
    for row in baseline["streaming"]:
        assert row["baseline_mean_us"] > 0
        assert row["current_cpu_mean_us"] > 0
        assert row["ratio_mean_us"] == row["current_mean_us"] / row["baseline_mean_us"]

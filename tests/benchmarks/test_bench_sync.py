"""The sync benchmark runs end to end (small counts); its figures are not judged here."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import bench_sync


def test_bench_sync_runs_and_writes_its_conditions(tmp_path: Path) -> None:
    out = tmp_path / "sync.json"
    assert bench_sync.main(["--frames", "200", "--seeds", "2", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results["state_at"]) == {
        "audio",
        "midi",
        "link",
        "feedback_beat_source",
        "feedback_link",
    }
    assert all(row["median_us"] > 0 for row in results["state_at"].values())
    assert [row["jitter_ms"] for row in results["clock_accuracy_125_bpm"]] == [0, 1, 2, 5]
    assert "load_average" in results["conditions"]

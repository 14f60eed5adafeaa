"""The cluster benchmark's seam part runs end to end (tiny sizes); its figures are not judged."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import bench_cluster


def test_seam_part_records_psnr_by_warmup(tmp_path: Path) -> None:
    out = tmp_path / "cluster.json"
    argv = ["--parts", "seams", "--seam-frames", "20", "--seam-chunk", "10"]
    assert bench_cluster.main([*argv, "--seam-modes", "default", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    seams = results["seams"]["worst_psnr_db_by_warmup"]
    assert list(seams) == ["defaults: blend 0.3, 1 step"]
    default = seams["defaults: blend 0.3, 1 step"]
    assert default["rule_warmup_frames"] == 8
    assert set(default["random energy"]) == {"0", "2", "4", "8"}
    assert {"ray", "model", "load_average_before"} <= set(results["conditions"])

"""bench_models runs end to end on the tiny shapes (its real-size figures are not judged here)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import bench_models


def test_one_architecture_is_measured_stage_by_stage() -> None:
    row = bench_models.measure(
        bench_models.SMOKE["tiny-sdxl"], device="cpu", frames=2, budget_s=30, sdxs_config=None
    )
    assert row["parameters"]["unet"] > 0
    assert len(row["parameters"]["text_encoders"]) == 2
    assert set(row["stages_ms"]) == {
        "text_encode_ms",
        "unet_step_ms",
        "decode_taesd_ms",
        "frame_ms_median",
    }
    assert all(ms > 0 for ms in row["stages_ms"].values())
    assert row["frames_measured"] == 2
    assert row["frame_shape"] == [64, 64, 4]
    assert row["peak_memory_gib"] > 0


def test_real_architectures_carry_their_published_counts() -> None:
    for name in ("sd15-512", "sd21-512", "sdxl-512", "sdxl-1024"):
        arch = bench_models.ARCHITECTURES[name]
        assert arch.published_unet is not None
        assert arch.published_text


def test_the_fp16_roundtrip_loads_through_the_folder_loader() -> None:
    row = bench_models.fp16_roundtrip(device="cpu", smoke=True)
    assert row["frame_shape"] == [64, 64, 4]
    assert row["load_s"] > 0


def test_a_child_process_per_architecture_and_sdxs_without_its_config(tmp_path: Path) -> None:
    out = tmp_path / "models.json"
    argv = ["--smoke", "--archs", "tiny", "--frames", "1", "--no-roundtrip", "--out", str(out)]
    assert bench_models.main(argv) == 0
    results = json.loads(out.read_text())
    assert results["architectures"]["tiny"]["frames_measured"] == 1
    assert results["conditions"]["device"] == "cpu"
    real = tmp_path / "real.json"
    assert bench_models.main(["--archs", "sdxs-512", "--no-roundtrip", "--out", str(real)]) == 0
    assert "not_measured" in json.loads(real.read_text())["architectures"]["sdxs-512"]

"""The benchmark scripts run end to end (tiny sizes); their figures are not judged here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import bench_engine, bench_gpu, bench_loop


def test_bench_engine_runs_and_writes_its_conditions(tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    argv = ["--size", "64", "--batch", "2", "--rounds", "1", "--frames-per-round", "2"]
    assert bench_engine.main([*argv, "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results["methods"]) == {
        "engine generate_batch (batch 2)",
        "engine generate_batch (batch 1)",
        "diffusers __call__ (prompt)",
        "diffusers __call__ (prompt_embeds)",
        "engine generate_batch (batch 1, unet untraced)",
    }
    assert all(row["fps"] > 0 for row in results["methods"].values())
    assert results["ratio_engine_batched_vs_call"] > 0
    # the engine replays its traced unet; the hooked one really ran eagerly, frame by frame
    assert results["traced_unet_signatures"] >= 1
    assert results["untraced_unet_eager_calls"] >= 2 * 2
    conditions = results["conditions"]
    assert conditions["size"] == "64x64"
    assert conditions["device"] == "cpu"
    assert {"torch", "diffusers", "cpu", "torch_threads", "omp_wait_policy"} <= set(conditions)


def test_bench_engine_refuses_a_ragged_batch() -> None:
    with pytest.raises(ValueError, match="multiple of batch"):
        bench_engine.run(size=64, batch=3, frames_per_round=4)


def test_bench_gpu_cpu_smoke_counts_flops_and_times_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    assert bench_gpu.main(["--cpu-smoke", "--frames", "2", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["flops"]["unet_step_tflop"] > 0
    assert results["flops"]["decode_tflop"] > 0
    assert results["matmul_tflops"] > 0
    assert results["floor_ms_per_frame"] > 0
    assert {
        "engine eager",
        "stream wrapper (coherence on)",
        "stream batch (2 steps, one unet call)",
        "diffusers __call__ (prompt)",
        "diffusers __call__ (prompt), 2 steps",
    } <= set(results["methods"])
    assert all(ms > 0 for ms in results["stages_ms"].values())
    # the live loop ran on the same components, pipelined and sequential, and on null (the
    # smoke runs one case of each kind)
    loop = results["live_loop"]
    assert len(loop) == 3
    assert all(row["frames"] > 0 for row in loop.values())
    assert {row["loop"] for row in loop.values()} == {"pipelined", "sequential"}


def test_bench_gpu_names_the_wheels_a_gpu_machine_lacks() -> None:
    advice = bench_gpu.wheel_advice(["diffusers==0.42.1"])
    assert "missing Python packages: diffusers==0.42.1" in advice
    assert all(wheel in advice for _, wheel in bench_gpu.WHEELS)
    assert "--target" in advice
    assert bench_gpu.missing_wheels() == []  # this machine has them all


def test_bench_loop_runs_the_daemon_on_the_null_model(tmp_path: Path) -> None:
    row = bench_loop.run_case(
        None, tmp_path, model="null", pipelined=True, seconds=0.6, size=64, outputs=("shm",)
    )
    assert row["frames"] > 10
    assert row["errors"] == 0
    # energy, tempo, chroma, fps, frame (+ beats), for at most 120 of the clock's 1,000 frames
    assert row["feedback_datagrams"] >= 5
    assert row["feedback_per_frame"] < 5
    assert row["host_ms"]["count"] == row["frames"]
    assert set(row["outputs"]) == {name for name in row["outputs"] if name.startswith("shm:")}


def test_bench_gpu_without_cuda_says_so_and_exits_cleanly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would run the full benchmark")
    assert bench_gpu.main([]) == 0
    assert "no CUDA device" in capsys.readouterr().out


def test_bench_web_runs_and_writes_its_conditions(tmp_path: Path) -> None:
    from benchmarks import bench_web

    out = tmp_path / "web.json"
    argv = ["--frames", "12", "--sizes", "64", "--changes", "20", "--abandoned", "20"]
    assert bench_web.main([*argv, "--stop-rounds", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    (preview,) = results["preview"]
    assert preview["closed"]["jpegs_encoded"] == 0  # nobody watched: nothing encoded
    assert preview["open"]["jpegs_encoded"] > 0
    assert preview["open"]["jpegs_received"] > 0
    assert results["websocket"]["abandoned"]["open_after"] == 0
    assert set(results["stop"]) >= {"idle", "50 websockets + 3 preview viewers"}
    assert {"aiohttp", "pillow", "cpu_count", "load_average"} <= set(results["conditions"])


def test_bench_loop_times_the_shared_memory_checksum() -> None:
    costs = bench_loop.shm_costs(sizes=(64,), repeats=3)
    assert costs["64x64"]["crc32_ms"] > 0
    assert costs["64x64"]["publish_ms"] > 0

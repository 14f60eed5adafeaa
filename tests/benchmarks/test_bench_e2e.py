"""The end-to-end benchmark runs the whole live path at a tiny size; its figures are not judged.

What is checked is that every section measured something real: frames went through shared
memory and came back identical, feedback datagrams reached a listener, music states and OSC
messages were each matched to a published frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from benchmarks import bench_e2e
from engine.profiling.profiler import get_profiler


def test_bench_e2e_measures_every_section_and_writes_its_conditions(tmp_path: Path) -> None:
    out = tmp_path / "e2e.json"
    threads = torch.get_num_threads()
    argv = ["--sizes", "64", "--frames", "4", "--latency-seconds", "1.2", "--osc-trials", "2"]

    assert bench_e2e.main([*argv, "--out", str(out)]) == 0

    results = json.loads(out.read_text())
    row = results["sizes"]["64x64"]
    throughput = row["throughput"]
    assert throughput["frames"] == 4
    assert throughput["fps"] > 0
    assert {"audio", "prompt", "latent", "generate", "publish", "feedback", "frame"} <= set(
        throughput["stages"]
    )
    assert all(stage["count"] == 4 for stage in throughput["stages"].values())
    assert throughput["shm_read_back_matches"] is True
    assert throughput["feedback_datagrams_received"] > 0
    assert set(row["generate_parts"]) == {
        "unet step (denoise)",
        "vae decode",
        "uint8 conversion (rgba_uint8)",
        "copy to a numpy frame",
    }
    audio = row["audio_to_frame"]
    assert audio["state_to_frame"]["count"] > 0
    # clicks at 0.5, 1.0 and 1.5 s of the 1.7 s fed; the last may end the run before its frame
    assert 2 <= audio["click_to_frame"]["count"] <= 3
    osc = row["osc_to_frame"]
    assert osc["messages_sent"] == 4
    assert [osc[key]["count"] for key in bench_e2e.OSC_KEYS] == [2, 1, 1]
    assert row["memory"]["rss_peak_mib"] >= row["memory"]["rss_after_load_mib"] > 0
    assert row["traced_unet_signatures"] >= 1
    conditions = results["conditions"]
    assert conditions["device"] == "cpu"
    assert conditions["model"].startswith("tiny")
    assert {"dtype", "steps", "torch", "diffusers", "cpu", "load_average_before"} <= set(conditions)
    # process-wide state is left as it was found
    assert torch.get_num_threads() == threads
    assert not get_profiler().enabled


def test_click_audio_puts_a_click_on_every_beat() -> None:
    samples, starts = bench_e2e.click_audio(2.0, bpm=120, sr=8000)
    assert starts == [4000, 8000, 12000]
    loud = np.flatnonzero(np.abs(samples) > 0.05)
    assert loud.min() == 4000
    assert loud.max() < 12000 + 32
    blocks = list(bench_e2e.blocks(samples))
    assert len(blocks) == samples.size // bench_e2e.BLOCK
    assert all(block.size == bench_e2e.BLOCK for block in blocks)

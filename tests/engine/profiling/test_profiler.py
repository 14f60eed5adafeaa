"""The profiler: records, summarises, exports, thread-safe, silent when disabled."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from engine.config import ProfilingConfig
from engine.errors import ConfigError
from engine.profiling.profiler import Profiler, configure_profiler, get_profiler


def test_record_and_statistics() -> None:
    prof = Profiler(enabled=True)
    for ms in (1, 2, 3, 4, 10):
        prof.record("unet", ms / 1000)
    prof.record("decode", 0.005)
    assert prof.get_avg_time("unet") == pytest.approx(0.004)
    assert prof.stages() == ["unet", "decode"]
    unet = prof.summary()["stages"]["unet"]
    assert unet["count"] == 5
    assert unet["total_s"] == pytest.approx(0.020)
    assert unet["mean_ms"] == pytest.approx(4.0)
    assert unet["p50_ms"] == pytest.approx(3.0)
    assert unet["p95_ms"] == pytest.approx(8.8)  # linear between 4 and 10
    assert unet["max_ms"] == pytest.approx(10.0)
    assert unet["share"] == pytest.approx(0.8)  # 20 ms of 25


def test_unknown_stage_averages_zero() -> None:
    assert Profiler(enabled=True).get_avg_time("never") == 0.0


def test_percentiles_cover_the_recent_window() -> None:
    prof = Profiler(enabled=True, window=3)
    for ms in (1, 2, 3, 4, 5):
        prof.record("step", ms / 1000)
    step = prof.summary()["stages"]["step"]
    assert step["count"] == 5
    assert step["mean_ms"] == pytest.approx(3.0)
    assert step["p50_ms"] == pytest.approx(4.0)  # of 3, 4, 5
    assert step["max_ms"] == pytest.approx(5.0)


def test_profile_times_its_body() -> None:
    prof = Profiler(enabled=True)
    outer_start = time.perf_counter()
    with prof.profile("sleep"):
        time.sleep(0.01)
    outer = time.perf_counter() - outer_start
    measured = prof.get_avg_time("sleep")
    # sleep guarantees the lower bound; the inner clock cannot exceed the outer one
    assert 0.01 <= measured <= outer


def test_a_failing_stage_is_recorded_and_the_error_passes() -> None:
    prof = Profiler(enabled=True)
    with pytest.raises(ZeroDivisionError), prof.profile("broken"):
        _ = 1 / 0
    assert prof.summary()["stages"]["broken"]["count"] == 1


def test_disabled_records_nothing() -> None:
    prof = Profiler()
    assert not prof.enabled
    first, second = prof.profile("a"), prof.profile("b")
    assert first is second  # one shared no-op context
    with first:
        pass
    prof.record("c", 1.0)
    assert prof.stages() == []
    assert prof.summary()["stages"] == {}
    prof.enable()
    with prof.profile("a"):
        pass
    prof.disable()
    with prof.profile("a"):
        pass
    prof.record("a", 1.0)
    assert prof.summary()["stages"]["a"]["count"] == 1  # recorded while enabled, kept


def test_recording_is_thread_safe() -> None:
    prof = Profiler(enabled=True)
    start = threading.Barrier(9)
    writers_done = threading.Event()
    read_errors: list[BaseException] = []

    def write(k: int) -> None:
        start.wait()
        for i in range(2000):
            prof.record("shared", 0.001)
            prof.record(f"own-{k}-{i % 50}", 0.001)  # new stages appear while others read
            with prof.profile("timed"):
                pass

    def read() -> None:
        start.wait()
        while not writers_done.is_set():
            try:
                prof.summary()
            except BaseException as exc:  # noqa: BLE001 - collected: lost in a thread otherwise
                read_errors.append(exc)
                return

    writers = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    reader = threading.Thread(target=read)
    for thread in [*writers, reader]:
        thread.start()
    for thread in writers:
        thread.join()
    writers_done.set()
    reader.join()
    assert read_errors == []
    stages = prof.summary()["stages"]
    assert stages["shared"]["count"] == 16000
    assert stages["shared"]["total_s"] == pytest.approx(16.0)
    assert stages["timed"]["count"] == 16000
    assert len(stages) == 2 + 8 * 50
    assert all(stages[f"own-{k}-{i}"]["count"] == 40 for k in range(8) for i in range(50))


def test_print_summary_table() -> None:
    prof = Profiler(enabled=True)
    prof.record("encode_prompt", 0.002)
    prof.record("unet", 0.006)
    out = io.StringIO()
    prof.print_summary(out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "profiler (cpu)"
    assert lines[1].split() == [
        "stage",
        "count",
        "mean",
        "ms",
        "p50",
        "ms",
        "p95",
        "ms",
        "max",
        "ms",
        "share",
    ]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:5]}
    assert rows["encode_prompt"] == ["1", "2.000", "2.000", "2.000", "2.000", "25.0%"]
    assert rows["unet"] == ["1", "6.000", "6.000", "6.000", "6.000", "75.0%"]
    assert lines[5].startswith("memory: rss ")


def test_print_summary_when_empty(capsys: pytest.CaptureFixture[str]) -> None:
    Profiler().print_summary()
    assert "no stages recorded" in capsys.readouterr().out


def test_export_json(tmp_path: Path) -> None:
    prof = Profiler(enabled=True)
    prof.record("decode", 0.004)
    path = prof.export_json(tmp_path / "nested" / "timings.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["device"] == "cpu"
    assert data["stages"]["decode"]["mean_ms"] == pytest.approx(4.0)
    assert data["conditions"]["torch"] == torch.__version__
    assert data["conditions"]["python"].count(".") == 2
    if sys.platform == "linux":
        assert data["memory"]["rss_bytes"] > 0
        assert data["memory"]["rss_peak_bytes"] >= data["memory"]["rss_bytes"]
    assert data["memory"]["device_bytes"] is None  # no device memory on the cpu


def test_export_to_an_unwritable_path_names_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"file/timings\.json"):
        Profiler(enabled=True).export_json(blocker / "timings.json")


def test_reset_forgets() -> None:
    prof = Profiler(enabled=True)
    prof.record("a", 1.0)
    prof.reset()
    assert prof.stages() == []
    assert prof.get_avg_time("a") == 0.0


def test_devices() -> None:
    assert Profiler(device=torch.device("cpu")).device == "cpu"
    with pytest.raises(ConfigError, match="'tpu'"):
        Profiler(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"'cuda:0'.*not available"):
            Profiler(device="cuda:0")
    if not torch.backends.mps.is_available():
        with pytest.raises(ConfigError, match=r"'mps'.*not available"):
            Profiler(device="mps")
    with pytest.raises(ConfigError, match="window"):
        Profiler(window=0)


def test_process_wide_profiler() -> None:
    prof = get_profiler()
    assert get_profiler() is prof
    was_enabled = prof.enabled
    try:
        assert configure_profiler(ProfilingConfig(enabled=True), "cpu") is prof
        assert prof.enabled
        assert prof.device == "cpu"
        configure_profiler(ProfilingConfig(enabled=False))
        assert not prof.enabled
    finally:
        if was_enabled:
            prof.enable()
